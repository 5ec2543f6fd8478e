"""Class names of the supported datasets (foreground only, in label order)."""

#: The 20 PASCAL VOC foreground classes; label index = position + 1 (0 is background).
VOC_CLASSES = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair',
               'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant',
               'sheep', 'sofa', 'train', 'tvmonitor')
