"""The faithfulness metrics' numbers, pinned on seeded inputs before issue 29 made them
faster: deletion and insertion, ROAD and cascading randomisation must give these numbers
to 1e-6 whatever the batch size (the copies' chunks may change, the arithmetic may not).
The pinned values were taken with the code of 2c60b20 at batch size 16."""

import pytest
import torch
from torch import nn

from cnnvis_tasks.mechanisms import faithfulness as fa

HEIGHT, WIDTH = 32, 40


def model() -> nn.Module:
    torch.manual_seed(11)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 12, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(48, 10),
    )
    return net.eval()


def inputs():
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(3, 3, HEIGHT, WIDTH, generator=generator)
    maps = torch.randn(3, HEIGHT, WIDTH, generator=generator)
    maps[2] = maps[2].clamp_min(0.5)  # a map with many ties (a ReLU'd CAM's zeros)
    return x, torch.tensor([1, 4, 7]), maps


def gradient_map(net, x, targets):
    x = x.detach().clone().requires_grad_(True)
    net(x).gather(1, targets[:, None]).sum().backward()
    return x.grad.abs().amax(dim=1)


def numbers(batch_size: int) -> dict:
    net = model()
    x, targets, maps = inputs()
    curves = fa.deletion_insertion(net, x, targets, maps, steps=7, batch_size=batch_size)
    road = fa.road_combined(net, x, targets, maps, fractions=(0.2, 0.5, 0.8), noise=0.01, seed=3, batch_size=batch_size)
    stages = fa.cascade_stages(net, 3)
    randomised = fa.randomisation(lambda m: gradient_map(m, x, targets), net, stages, seed=2)
    return {
        "deletion": curves["deletion"].tolist(),
        "insertion": curves["insertion"].tolist(),
        "deletion_auc": curves["deletion_auc"].tolist(),
        "insertion_auc": curves["insertion_auc"].tolist(),
        "road_most": road["most"].tolist(),
        "road_least": road["least"].tolist(),
        "road_combined": road["combined"].tolist(),
        "randomisation": randomised.tolist(),
    }


PINNED = {
    "deletion": [
        [
            0.10198378562927246,
            0.1012573316693306,
            0.10107211023569107,
            0.10184159874916077,
            0.10210330039262772,
            0.10289419442415237,
            0.10334054380655289,
            0.10573910176753998,
        ],
        [
            0.10019804537296295,
            0.09967747330665588,
            0.09892317652702332,
            0.09810430556535721,
            0.09728221595287323,
            0.09651720523834229,
            0.0954468622803688,
            0.09267417341470718,
        ],
        [
            0.10560186952352524,
            0.10601668804883957,
            0.10556283593177795,
            0.10639221221208572,
            0.10735709965229034,
            0.1075555682182312,
            0.10599665343761444,
            0.10496335476636887,
        ],
    ],
    "deletion_auc": [0.10233920812606812, 0.09748198837041855, 0.10630948841571808],
    "insertion": [
        [
            0.10553230345249176,
            0.10375096648931503,
            0.10316310822963715,
            0.10305378586053848,
            0.10252109169960022,
            0.10235396027565002,
            0.10264631360769272,
            0.10198378562927246,
        ],
        [
            0.09313951432704926,
            0.09553907066583633,
            0.09685603529214859,
            0.09821080416440964,
            0.09883011132478714,
            0.09947903454303741,
            0.09935475885868073,
            0.10019804537296295,
        ],
        [
            0.10516591370105743,
            0.10602755844593048,
            0.10586190223693848,
            0.10513260960578918,
            0.10435938835144043,
            0.10440608114004135,
            0.10522567480802536,
            0.10560186952352524,
        ],
    ],
    "insertion_auc": [0.10303407162427902, 0.09785111248493195, 0.10519927740097046],
    "randomisation": [
        [0.22727711816535537, 0.1034220888043755, 0.10600251564179423],
        [0.04698501212158944, 0.18293559558752176, 0.013711134696127137],
        [0.005144357006443486, 0.14833372205122197, -0.03775078598070434],
    ],
    "road_combined": [0.005346567369997501, 0.0019764862954616547, 0.001982046291232109],
    "road_least": [
        [0.00010938197374343872, 0.0014119744300842285, -0.0017407312989234924],
        [-0.010323598980903625, -0.03513825684785843, -0.0713198184967041],
        [-0.025789819657802582, -0.025780178606510162, -0.02713538333773613],
    ],
    "road_most": [
        [-0.010282017290592194, -0.009051024913787842, -0.012965735048055649],
        [-0.014026708900928497, -0.04454074054956436, -0.07007314264774323],
        [-0.0056874752044677734, -0.04243328049778938, -0.04247690364718437],
    ],
}


@pytest.mark.parametrize("batch_size", [1, 5, 16])
def test_the_metrics_give_the_pinned_numbers_at_any_batch_size(batch_size):
    found = numbers(batch_size)
    assert set(found) == set(PINNED)
    for name, expected in PINNED.items():
        assert torch.tensor(found[name]).double() == pytest.approx(torch.tensor(expected).double(), abs=1e-6), name
