"""A CloudFormation or SAM template in YAML, printed as JSON, its short-form intrinsic functions
(!Ref, !Sub, !If, ...) written out in full ({"Ref": ...}, {"Fn::Sub": ...}), as CloudFormation
reads them. For the emulator's template reader, which reads JSON.

Usage: python3 cfn_to_json.py TEMPLATE.yaml
"""
import json
import sys

import yaml


class Loader(yaml.SafeLoader):
    pass


def intrinsic(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix in ("Ref", "Condition"):
        return {suffix: value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {"Fn::" + suffix: value}


Loader.add_multi_constructor("!", intrinsic)

with open(sys.argv[1], encoding="utf-8") as f:
    json.dump(yaml.load(f, Loader=Loader), sys.stdout, indent=1)
