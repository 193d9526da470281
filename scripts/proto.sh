#!/usr/bin/env bash
# Protobuf tooling for every buf module listed in buf.yaml.
#
#   scripts/proto.sh gen     lint, then regenerate the committed Go code and the OpenAPI
#                            document (api/openapi/hufu.swagger.json) in place
#   scripts/proto.sh check   lint, regenerate into a temporary directory and fail if the
#                            committed generated code or OpenAPI document differs (stale or
#                            hand-edited), or if third_party/googleapis is not the pinned copy
#
# buf is pinned in tools/go.mod (its own module, so the main go.mod is not touched) and run
# with `go tool`; protoc-gen-go runs from the main module (see buf.gen.yaml) so generated
# code always matches the protobuf runtime that go.mod pins. The first run builds buf from
# source, which takes a few minutes; later runs use Go's build cache.
#
# google/api/annotations.proto and http.proto (the HTTP annotations) are committed in
# third_party/googleapis, copied from the Go module tools/go.mod pins (grpc-gateway v1 ships
# them; buf cannot fetch them from the BSR offline); check verifies the copies.
set -euo pipefail
cd "$(dirname "$0")/.."

buf() { go tool -modfile=tools/go.mod buf "$@"; }

# Every generated file lives next to a go_package directory; list them from the tree so a
# deleted .proto also shows up as stale generated code.
generated() { git ls-files -co --exclude-standard '*.pb.go' '*.pb.gw.go' 'api/openapi/*.swagger.json' | sort; }

googleapis_module=github.com/grpc-ecosystem/grpc-gateway
googleapis_files=(google/api/annotations.proto google/api/http.proto)

# check_googleapis fails if the committed copies differ from the pinned module's files.
check_googleapis() {
  local dir
  dir=$(go mod download -modfile=tools/go.mod -json "$googleapis_module" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  local status=0
  for f in "${googleapis_files[@]}"; do
    if ! cmp -s "$dir/third_party/googleapis/$f" "third_party/googleapis/$f"; then
      echo "third_party/googleapis/$f differs from $googleapis_module's (tools/go.mod); copy it again" >&2
      status=1
    fi
  done
  return $status
}

mode=${1:-}
case "$mode" in
gen)
  buf lint
  buf format --diff --exit-code --exclude-path third_party/googleapis/google
  buf generate
  buf generate --template buf.gen.openapi.yaml
  ;;
check)
  buf lint
  buf format --diff --exit-code --exclude-path third_party/googleapis/google
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  buf generate --output "$tmp"
  buf generate --template buf.gen.openapi.yaml --output "$tmp"
  status=0
  check_googleapis || status=1
  # Files generated now must equal the committed ones...
  while IFS= read -r f; do
    rel=${f#"$tmp"/}
    if ! cmp -s "$f" "$rel"; then
      echo "stale generated file: $rel (run scripts/proto.sh gen)" >&2
      status=1
    fi
  done < <(find "$tmp" -name '*.pb.go' -o -name '*.pb.gw.go' -o -name '*.swagger.json' | sort)
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
