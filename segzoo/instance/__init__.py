"""Instance segmentation (Mask R-CNN): training, evaluation, prediction, drawing; the data
sets live in :mod:`segzoo.data` with the semantic ones.

Entry points (imported lazily; this package imports nothing heavy):

* :func:`segzoo.instance.train.train_instance` - ``segzoo train`` for instance models
* :func:`segzoo.instance.evaluate.evaluate_instance` - ``segzoo evaluate``: COCO mask and box AP
* :func:`segzoo.instance.predict.predict_instances` (an ``Instances``) and ``draw_instances`` - the app
* :func:`segzoo.data.get_instance_dataset` - ``coco`` (any COCO-format folder),
  ``fruits_nuts`` and ``camvid_instances``
* :func:`segzoo.instance.backends.detectron2_available` - is the optional backend usable
* :func:`segzoo.instance.pretrained.save_coco_checkpoint` - the COCO-trained "general
  photos" model as a checkpoint (needs the network once)
"""
