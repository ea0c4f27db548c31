#!/usr/bin/env python3
"""The deploy files against AWS's and Kubernetes' own schemas, offline (no AWS call, no
cluster):

- deploy/ecs/task-definition.json is a valid input of ECS RegisterTaskDefinition in
  botocore's service model (botocore.validate, the check the AWS CLI runs before it
  sends anything), as written and with cpuArchitecture X86_64;
- the AWS CLI inputs under deploy/aws/ (`--cli-input-json` files, named after their
  operation) are valid inputs of that operation;
- every `aws` command in the shell blocks of the deploy docs names an operation of its
  service and only options of that operation (with its required ones, unless
  --cli-input-json gives them), as the AWS CLI derives them from botocore's models;
- every IAM policy under deploy/ (*policy*.json) is a policy document whose actions
  are operations of the service they name in botocore's models (so a misspelled or
  invented action fails), with ARN or "*" resources;
- the Kubernetes base and overlays, rendered by `kubectl kustomize`, validate strictly
  against the Kubernetes JSON schemas bundled in kubernetes-validate, for the oldest
  Kubernetes the native sidecar needs (1.29) and the newest bundled.

Each check is also run on a broken copy, which must fail: a validator that accepts
everything would otherwise pass unnoticed.

    .ci/validate_deploy_files.py [REPO_ROOT]

Prints one PASS/FAIL line per check and "deploy files: N passed, M failed"; exits 1 on
any failure.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import shlex

import botocore.session
from botocore import xform_name
from botocore.exceptions import ParamValidationError
from botocore.validate import validate_parameters

ROOT = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent)
# Actions that authorize something other than an API operation.
PERMISSION_ONLY = {"sts:TagSession"}
# IAM prefixes whose operations live in more than one botocore model.
MODELS_OF_PREFIX = {"bedrock-agentcore": ["bedrock-agentcore", "bedrock-agentcore-control"]}
KUBERNETES_VERSIONS = ["1.29.0", None]  # None: kubernetes-validate's newest

session = botocore.session.get_session()
results: list[tuple[bool, str]] = []


def record(ok: bool, what: str) -> None:
    results.append((ok, what))
    print(f"{'PASS' if ok else 'FAIL'} {what}", flush=True)


def task_definition_problems(task: dict) -> str | None:
    shape = session.get_service_model("ecs").operation_model("RegisterTaskDefinition").input_shape
    try:
        validate_parameters(task, shape)
    except ParamValidationError as e:
        return str(e)
    return None


def operations(prefix: str) -> set[str]:
    names: set[str] = set()
    for model in MODELS_OF_PREFIX.get(prefix, [prefix]):
        names |= set(session.get_service_model(model).operation_names)
    return names


def policy_problems(policy: dict) -> list[str]:
    problems = []
    if policy.get("Version") != "2012-10-17":
        problems.append(f"Version {policy.get('Version')!r}, not 2012-10-17")
    statements = policy.get("Statement")
    if not isinstance(statements, list) or not statements:
        return problems + ["Statement is not a non-empty list"]
    for i, st in enumerate(statements):
        unknown = set(st) - {"Sid", "Effect", "Action", "Resource", "Principal", "Condition"}
        if unknown:
            problems.append(f"Statement[{i}]: unknown keys {sorted(unknown)}")
        if st.get("Effect") not in ("Allow", "Deny"):
            problems.append(f"Statement[{i}].Effect {st.get('Effect')!r}")
        actions = st.get("Action")
        actions = [actions] if isinstance(actions, str) else actions or []
        if not actions:
            problems.append(f"Statement[{i}]: no Action")
        for action in actions:
            prefix, _, name = action.partition(":")
            if action in PERMISSION_ONLY:
                continue
            try:
                known = operations(prefix)
            except Exception as e:  # an unknown service
                problems.append(f"Statement[{i}]: {action}: no botocore model for {prefix!r} ({e})")
                continue
            if name not in known:
                problems.append(f"Statement[{i}]: {action} is not an operation of {prefix}")
        if "Principal" not in st:
            resources = st.get("Resource")
            resources = [resources] if isinstance(resources, str) else resources or []
            if not resources:
                problems.append(f"Statement[{i}]: no Resource")
            for r in resources:
                if r != "*" and not r.startswith("arn:aws:"):
                    problems.append(f"Statement[{i}]: resource {r!r} is not an ARN")
    return problems


def check_ecs() -> None:
    path = ROOT / "deploy/ecs/task-definition.json"
    task = json.loads(path.read_text())
    for arch in ("as written", "X86_64"):
        variant = copy.deepcopy(task)
        if arch != "as written":
            variant["runtimePlatform"]["cpuArchitecture"] = arch
        problem = task_definition_problems(variant)
        record(problem is None, f"ECS RegisterTaskDefinition accepts {path.relative_to(ROOT)} ({arch}){': ' + problem if problem else ''}")
    broken = copy.deepcopy(task)
    broken["containerDefinitions"][0]["healthcheck"] = broken["containerDefinitions"][0].pop("healthCheck")
    record(task_definition_problems(broken) is not None, "ECS RegisterTaskDefinition refuses a misspelled key (healthcheck)")


# deploy/aws/<file>: the operation whose --cli-input-json it is.
CLI_INPUTS = {
    "create-workload-identity.json": ("bedrock-agentcore-control", "CreateWorkloadIdentity"),
    "create-oauth2-credential-provider.json": ("bedrock-agentcore-control", "CreateOauth2CredentialProvider"),
}


def input_problems(service: str, operation: str, params: dict) -> str | None:
    shape = session.get_service_model(service).operation_model(operation).input_shape
    try:
        validate_parameters(params, shape)
    except ParamValidationError as e:
        return str(e)
    return None


def check_cli_inputs() -> None:
    files = sorted(p.name for p in (ROOT / "deploy/aws").glob("*.json"))
    record(files == sorted(CLI_INPUTS), f"deploy/aws holds the known CLI inputs: {files}")
    for name, (service, operation) in CLI_INPUTS.items():
        problem = input_problems(service, operation, json.loads((ROOT / "deploy/aws" / name).read_text()))
        record(problem is None, f"{service} {operation} accepts deploy/aws/{name}{': ' + problem if problem else ''}")
    broken = {"name": "x", "credentialProviderVendor": "CognitoOauth2", "oauth2ProviderConfigInput": {}}
    record(input_problems("bedrock-agentcore-control", "CreateOauth2CredentialProvider", broken) is not None,
           "CreateOauth2CredentialProvider refuses a vendor that does not exist (CognitoOauth2)")


# AWS CLI commands that are the CLI's own, not API operations, and options of the CLI
# itself.
CLI_CUSTOMIZATIONS = {("ecr", "get-login-password"), ("s3", "cp"), ("logs", "tail")}
CLI_GLOBAL_OPTIONS = {"query", "output", "region", "profile", "endpoint-url", "no-cli-pager", "cli-input-json", "debug"}
COMMAND_ENDS = {"|", "||", "&&", ";", ")", ">", ">>", "<"}


def aws_commands(text: str) -> list[list[str]]:
    """The argument lists of the `aws` commands in the shell blocks of a Markdown text."""
    commands, in_sh, logical = [], False, ""
    for line in text.splitlines():
        if line.startswith("```"):
            in_sh = line.strip() in ("```sh", "```bash")
            continue
        if not in_sh:
            continue
        logical += line.rstrip("\\") + " "
        if line.endswith("\\"):
            continue
        code, logical = logical.split(" #")[0], ""
        tokens = list(shlex.shlex(code, posix=True, punctuation_chars=True))
        for i, token in enumerate(tokens):
            starts_command = i == 0 or tokens[i - 1] in COMMAND_ENDS | {"("}
            if token == "aws" and starts_command and i + 2 < len(tokens):
                args = []
                for t in tokens[i + 1:]:
                    if t in COMMAND_ENDS:
                        break
                    args.append(t)
                commands.append(args)
    return commands


def command_problems(args: list[str]) -> list[str]:
    service, command, rest = args[0], args[1], args[2:]
    if (service, command) in CLI_CUSTOMIZATIONS:
        return []
    try:
        model = session.get_service_model(service)
    except Exception as e:
        return [f"aws {service}: no such service ({e})"]
    by_cli_name = {xform_name(op, "-"): op for op in model.operation_names}
    if command not in by_cli_name:
        return [f"aws {service} {command}: no such operation"]
    shape = model.operation_model(by_cli_name[command]).input_shape
    members = {xform_name(m, "-"): m for m in (shape.members if shape else {})}
    given, problems = set(), []
    for arg in rest:
        if not arg.startswith("--"):
            continue
        name = arg[2:]
        if name in CLI_GLOBAL_OPTIONS:
            given.add(name)
            continue
        plain = name[3:] if name.startswith("no-") else name
        if plain not in members:
            problems.append(f"aws {service} {command}: no option --{name}")
        given.add(plain)
    if "cli-input-json" not in given and shape is not None:
        for required in shape.required_members:
            if xform_name(required, "-") not in given:
                problems.append(f"aws {service} {command}: missing --{xform_name(required, '-')}")
    return problems


def check_doc_commands() -> None:
    docs = sorted(ROOT.glob("docs/deploy*.md"))
    total = 0
    for doc in docs:
        commands = aws_commands(doc.read_text())
        total += len(commands)
        problems = [p for args in commands for p in command_problems(args)]
        record(not problems, f"{len(commands)} aws commands of {doc.relative_to(ROOT)}{': ' + '; '.join(problems) if problems else ''}")
    record(total >= 20, f"aws commands found in the deploy docs: {total}")
    broken = aws_commands("```sh\naws secretsmanager create-secret --secret-name x \\\n    --secret-string y\n```\n")
    record(bool(command_problems(broken[0])), "the command check refuses an option that does not exist (--secret-name)")


def check_policies() -> None:
    files = sorted(ROOT.glob("deploy/**/*policy*.json"))
    record(len(files) >= 6, f"IAM policy files found: {len(files)}")
    for path in files:
        problems = policy_problems(json.loads(path.read_text()))
        record(not problems, f"IAM policy {path.relative_to(ROOT)}{': ' + '; '.join(problems) if problems else ''}")
    broken = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "secretsmanager:GetSecret", "Resource": "*"}]}
    record(bool(policy_problems(broken)), "IAM policy check refuses an action that is no operation (secretsmanager:GetSecret)")


def kubernetes_validate(path: Path, version: str | None) -> subprocess.CompletedProcess:
    args = [str(Path(sys.executable).parent / "kubernetes-validate"), "--strict", "--quiet"]
    if version:
        args += ["-k", version]
    return subprocess.run(args + [str(path)], capture_output=True, text=True)


def check_kubernetes() -> None:
    targets = [ROOT / "deploy/kubernetes/base"] + sorted((ROOT / "deploy/kubernetes/overlays").iterdir())
    with tempfile.TemporaryDirectory() as scratch:
        for target in targets:
            name = target.relative_to(ROOT)
            rendered = subprocess.run(["kubectl", "kustomize", str(target)], capture_output=True, text=True)
            record(rendered.returncode == 0, f"kubectl kustomize {name}{': ' + rendered.stderr.strip() if rendered.returncode else ''}")
            if rendered.returncode:
                continue
            out = Path(scratch) / (str(name).replace("/", "_") + ".yaml")
            out.write_text(rendered.stdout)
            for version in KUBERNETES_VERSIONS:
                done = kubernetes_validate(out, version)
                text = (done.stdout + done.stderr).strip()
                record(done.returncode == 0, f"Kubernetes {version or 'newest'} schemas (strict) accept {name}{': ' + text if done.returncode else ''}")
        broken = Path(scratch) / "broken.yaml"
        broken.write_text((Path(scratch) / "deploy_kubernetes_base.yaml").read_text().replace("readOnlyRootFilesystem", "readOnlyRootFilesytem"))
        record(kubernetes_validate(broken, KUBERNETES_VERSIONS[0]).returncode != 0, "Kubernetes schemas refuse a misspelled key (readOnlyRootFilesytem)")


check_ecs()
check_cli_inputs()
check_doc_commands()
check_policies()
check_kubernetes()
passed = sum(ok for ok, _ in results)
failed = len(results) - passed
print(f"deploy files: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
