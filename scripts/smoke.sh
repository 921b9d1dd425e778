#!/usr/bin/env bash
# Smoke test of a running service: every endpoint once, then the metrics.
#   scripts/smoke.sh [BASE_URL] [IMAGE]       (default http://localhost:8080, a generated test image)
set -euo pipefail
base="${1:-http://localhost:8080}"
image="${2:-}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ -z "$image" ]; then
    image="$work/blank.png"
    python3 -c "import base64,sys; open(sys.argv[1],'wb').write(base64.b64decode('iVBORw0KGgoAAAANSUhEUgAAAEAAAAAwCAIAAAAuKetIAAAAQUlEQVR42u3PAQkAAAgDMDX5o9tCELYG6yT12dRzAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAncWNcMB4HW5EbYAAAAASUVORK5CYII='))" "$image"
fi

fail() { echo "FAIL: $*" >&2; exit 1; }
check() {  # check NAME EXPECTED_STATUS curl-args...
    local name=$1 expected=$2; shift 2
    local status
    status=$(curl -sS -o "$work/body" -w '%{http_code}' "$@") || fail "$name: no answer"
    [ "$status" = "$expected" ] || fail "$name: HTTP $status, expected $expected: $(head -c 300 "$work/body")"
    echo "ok   $name ($status)"
}

check livez 200 "$base/livez"
check readyz 200 "$base/readyz"
check models 200 "$base/v1/models"
grep -q '"default":true' "$work/body" || fail "models: no default model"
check "detect (multipart)" 200 -F "images=@$image" "$base/v1/detect"
grep -q '"results"' "$work/body" || fail "detect: no results"
printf '{"images": ["%s"]}' "$(base64 -w0 "$image")" > "$work/request.json"
check "detect (json)" 200 -H 'content-type: application/json' --data "@$work/request.json" "$base/v1/detect"
check "detect/annotated" 200 -F "images=@$image" "$base/v1/detect/annotated"
check "vision/face" 200 -F "image=@$image" "$base/v1/vision/face"
grep -q '"success":true' "$work/body" || fail "vision/face: not a success"
check "bad image is refused" 415 -F "images=@$0" "$base/v1/detect"
check docs 200 "$base/docs"
check metrics 200 "$base/metrics"
for metric in extd_http_requests_total extd_batch_size_bucket extd_queue_depth extd_model_info; do
    grep -q "^$metric" "$work/body" || fail "metrics: $metric missing"
done
echo "all endpoints answer"
