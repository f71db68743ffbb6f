#!/usr/bin/env bash
# Every check a template must pass before it deploys: SAM's own validation, cfn-lint on the
# SAM template and on the CloudFormation SAM makes of it, and erpsync's policy rules on that
# CloudFormation. usage: lint-template.sh TEMPLATE (from the repository root).
set -euo pipefail
template=${1:-infra/template.yaml}
venv=${ERPSYNC_VENV:-.stack/venv}
erpsync=${ERPSYNC:-target/debug/erpsync}
# Offline: SAM and cfn-lint need a region and some credentials, never a real account.
export AWS_DEFAULT_REGION=eu-west-1 AWS_REGION=eu-west-1
export AWS_ACCESS_KEY_ID=lint AWS_SECRET_ACCESS_KEY=lint SAM_CLI_TELEMETRY=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$venv/bin/sam" validate --lint --template "$template"
"$venv/bin/cfn-lint" "$template"
"$venv/bin/python" infra/lint/transform.py "$template" > "$work/transformed.json"
# W1020: SAM itself resolves the stage into the layer's Fn::Sub; that style warning is
# about SAM's output, not this template.
"$venv/bin/cfn-lint" --ignore-checks W1020 -- "$work/transformed.json"
"$erpsync" template check "$work/transformed.json"
