#!/usr/bin/env bash
# Runs the whole Palisade test suite on a fresh machine:
#  - installs what is missing (the official OpenTelemetry Python SDK and the
#    openapi-spec-validator in a venv),
#  - starts a throwaway PostgreSQL cluster (removed on exit),
#  - builds the palisade binary and runs every test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

# --- Python OpenTelemetry SDK (real client for the SDK tests) -----------------------
venv="$root/target/pyenv"
if ! "$venv/bin/python" -c "import opentelemetry.exporter.otlp.proto.http, opentelemetry.exporter.otlp.proto.grpc, openapi_spec_validator, selenium" 2>/dev/null; then
  echo "test.sh: installing the OpenTelemetry Python SDK, openapi-spec-validator and Selenium into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    opentelemetry-sdk==1.45.2 \
    opentelemetry-exporter-otlp-proto-http==1.45.2 \
    opentelemetry-exporter-otlp-proto-grpc==1.45.2 \
    openapi-spec-validator==0.9.0 \
    selenium==4.27.1
fi
export PALISADE_TEST_PYTHON="$venv/bin/python"
# A signing secret the paging tests read from the environment (channels file).
export PALISADE_TEST_HOOK_SECRET="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
# Falco's k8saudit test traces are read in place from the shared directory beside the
# repository (never copied into it); a clone elsewhere finds them at /work/shared.
if [ -z "${PALISADE_SHARED_DIR:-}" ]; then
  for d in "$PWD/../shared" /work/shared; do
    if [ -f "$d/data/falco-k8saudit-traces/NOTICE.md" ]; then export PALISADE_SHARED_DIR="$d"; break; fi
  done
fi

# --- Command-line peers used by the TLS tests ----------------------------------------
missing=""
for tool in openssl curl sha256sum; do command -v "$tool" >/dev/null || missing="$missing $tool"; done
if [ -n "$missing" ]; then
  echo "test.sh: installing$missing"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl curl coreutils >/dev/null
fi

# --- Prometheus Alertmanager: the real receiver of the paging tests -----------------
if [ ! -x /usr/bin/prometheus-alertmanager ] && ! command -v alertmanager >/dev/null; then
  echo "test.sh: installing prometheus-alertmanager"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus-alertmanager >/dev/null
fi
# Debian's package starts a system instance on :9093; the tests start their own.

# --- Prometheus and promtool: the reference of the PromQL conformance test ----------
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  echo "test.sh: installing prometheus (with promtool)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
# Debian's package may start a system instance on :9090; the test starts its own on a free port.

# --- Headless Chromium and its WebDriver: the real browser of the UI tests ----------
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  echo "test.sh: installing chromium and chromium-driver"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi

# --- PostgreSQL: the machine's server binaries, a private cluster on loopback -------
pgbin=""
if command -v pg_config >/dev/null && [ -x "$(pg_config --bindir)/initdb" ]; then pgbin=$(pg_config --bindir); fi
if [ -z "$pgbin" ]; then pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true); fi
if [ -z "$pgbin" ] || [ ! -x "$pgbin/initdb" ]; then
  echo "test.sh: PostgreSQL server binaries not found; installing postgresql"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi
pgtmp=$(mktemp -d /tmp/palisade-testpg.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres:postgres "$pgtmp"
cleanup() {
  as_pg "$pgbin/pg_ctl" -D "$pgtmp/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$pgtmp"
}
trap cleanup EXIT
as_pg "$pgbin/initdb" -D "$pgtmp/data" -U postgres --auth=trust -E UTF8 --no-locale >"$pgtmp/initdb.log"
as_pg "$pgbin/pg_ctl" -D "$pgtmp/data" -l "$pgtmp/server.log" -w -o \
  "-p $port -k $pgtmp -c listen_addresses=127.0.0.1 -c max_connections=400 -c shared_buffers=256MB -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
  start >/dev/null
export PALISADE_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
echo "test.sh: throwaway PostgreSQL on 127.0.0.1:$port"

# --- Build the binary the black-box tests spawn, then run everything ----------------
cargo build --bin palisade
log="$pgtmp/cargo-test.log"
set +e
RUST_TEST_THREADS=${RUST_TEST_THREADS:-4} cargo test --workspace --lib --bins --tests 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line with the totals of every test binary.
awk '/^test result:/ {p += $4; f += $6} END {printf "tests: %d passed, %d failed\n", p, f}' "$log"
exit "$status"
