#!/usr/bin/env bash
# Protobuf tooling for every buf module listed in buf.yaml.
#
#   scripts/proto.sh gen     lint, then regenerate the committed Go code in place
#   scripts/proto.sh check   lint, regenerate into a temporary directory and fail if the
#                            committed generated code differs (stale or hand-edited)
#
# buf is pinned in tools/go.mod (its own module, so the main go.mod is not touched) and run
# with `go tool`; protoc-gen-go runs from the main module (see buf.gen.yaml) so generated
# code always matches the protobuf runtime that go.mod pins. The first run builds buf from
# source, which takes a few minutes; later runs use Go's build cache.
set -euo pipefail
cd "$(dirname "$0")/.."

buf() { go tool -modfile=tools/go.mod buf "$@"; }

# Every generated file lives next to a go_package directory; list them from the tree so a
# deleted .proto also shows up as stale generated code.
generated() { git ls-files -co --exclude-standard '*.pb.go' | sort; }

mode=${1:-}
case "$mode" in
gen)
  buf lint
  buf format --diff --exit-code
  buf generate
  ;;
check)
  buf lint
  buf format --diff --exit-code
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  buf generate --output "$tmp"
  status=0
  # Files generated now must equal the committed ones...
  while IFS= read -r f; do
    rel=${f#"$tmp"/}
    if ! cmp -s "$f" "$rel"; then
      echo "stale generated file: $rel (run scripts/proto.sh gen)" >&2
      status=1
    fi
  done < <(find "$tmp" -name '*.pb.go' | sort)
  # ...and every committed generated file must still be produced.
  while IFS= read -r rel; do
    if [ ! -f "$tmp/$rel" ]; then
      echo "orphaned generated file: $rel (its .proto is gone)" >&2
      status=1
    fi
  done < <(generated)
  exit $status
  ;;
*)
  echo "usage: $0 gen|check" >&2
  exit 2
  ;;
esac
