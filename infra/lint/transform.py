"""Prints the CloudFormation that AWS SAM makes of a SAM template (as `sam deploy` would
submit it), so that cfn-lint and erpsync's policy rules check what AWS will create.

usage: transform.py TEMPLATE > transformed.json
"""
import json
import os
import sys

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class NoManagedPolicies:
    """The template names no AWS managed policies by name, so none need looking up."""

    def load(self):
        return {}


def main():
    os.environ.setdefault("AWS_DEFAULT_REGION", "eu-west-1")
    with open(sys.argv[1], encoding="utf-8") as handle:
        template = yaml_parse(handle.read())
    # `sam package` uploads the code and puts its S3 address here; so does this.
    template.get("Globals", {}).get("Function", {})["CodeUri"] = "s3://erpsync-artifacts/erpsync.zip"
    for resource in template.get("Resources", {}).values():
        if resource.get("Type") == "AWS::Serverless::Function":
            resource.get("Properties", {}).pop("CodeUri", None)
        if resource.get("Type") == "AWS::Serverless::LayerVersion":
            resource["Properties"]["ContentUri"] = "s3://erpsync-artifacts/config.zip"
    parameters = {"Stage": "prod", "ErpUrl": "https://erp.example.com",
                  "AlarmEmail": "ops@example.com"}
    transformed = transform(template, parameters, NoManagedPolicies())
    json.dump(transformed, sys.stdout, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
