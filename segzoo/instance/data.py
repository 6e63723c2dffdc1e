"""The data set names the instance pipeline imports from here. The data sets live in
:mod:`segzoo.data`, beside the semantic ones, in one registry for both tasks."""

from segzoo.data import get_instance_dataset
from segzoo.data.camvid_instances import CAMVID_THINGS
from segzoo.data.instances import InstanceDataset, collate_instances

__all__ = ["CAMVID_THINGS", "InstanceDataset", "collate_instances", "get_instance_dataset"]
