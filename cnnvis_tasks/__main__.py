from cnnvis_tasks.cli import main

main()
