#!/usr/bin/env bash
# The README's test command: installs what the tests start for real when it is missing (Debian's
# prometheus for the metrics tests, chromium and chromium-driver for the console's browser
# tests, nats-server for the fleet tests), then runs `cargo test` with any arguments given.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
[ -x /usr/sbin/nats-server ] || command -v nats-server >/dev/null 2>&1 || need+=(nats-server)
if [ "${#need[@]}" -gt 0 ]; then
  echo "== installing ${need[*]} (Debian packages)"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The falco-exporter dashboard the metrics test queries sits in the corpus beside the checkout.
corpus="$(cd .. && pwd)/shared/corpus"
if [ -z "${FALCO_API_CORPUS:-}" ] && [ -d "$corpus" ]; then
  export FALCO_API_CORPUS="$corpus"
fi

exec cargo test --locked "$@"
