"""Reading images and image lists, writing pictures and arrays (atomically, with their facts)."""
