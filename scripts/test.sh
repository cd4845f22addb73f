#!/usr/bin/env bash
# The README's test command: installs what the tests start for real when it is missing (Debian's
# prometheus for the metrics tests, chromium and chromium-driver for the console's browser
# tests, nats-server for the fleet tests), then runs `cargo test` with any arguments given
# (`scripts/test.sh -- --ignored` runs the conformance tests against the corpus).
#
# On a machine without those packages and without root, FALCO_API_SKIP_SERVICES=1 runs
# everything else: the tests that need them are skipped by name, and the run says so loudly
# before and after — they are never counted as passed.
set -uo pipefail
cd "$(dirname "$0")/.."

# The tests that start Debian's programs.
service_tests=(
  console::live_alerts_resume_after_reload_and_kill_9_and_filters_narrow_the_table
  console::rules_history_diff_rollback_toggles_and_the_editor_shows_errors_where_they_are
  console::a_readers_session_changes_nothing_and_the_page_fits_a_narrow_window
  console::the_page_keeps_up_with_2000_alerts_a_second
  console::an_admin_tunes_a_rule_from_the_alert_detail_panel
  metrics::a_real_prometheus_answers_the_falco_exporter_dashboard
  fleet::
)

banner() {
  echo "=================================================================================" >&2
  echo "SKIPPED, NOT RUN (FALCO_API_SKIP_SERVICES is set): the tests that need Debian's" >&2
  echo "chromium, chromium-driver, prometheus and nats-server:" >&2
  printf '  %s\n' "${service_tests[@]}" >&2
  echo "=================================================================================" >&2
}

# The falco-exporter dashboard the metrics test queries sits in the corpus beside the checkout.
corpus="$(cd .. && pwd)/shared/corpus"
if [ -z "${FALCO_API_CORPUS:-}" ] && [ -d "$corpus" ]; then
  export FALCO_API_CORPUS="$corpus"
fi

if [ -n "${FALCO_API_SKIP_SERVICES:-}" ]; then
  banner
  args=("$@")
  has_separator=0
  for a in "$@"; do [ "$a" = "--" ] && has_separator=1; done
  [ "$has_separator" -eq 1 ] || args+=(--)
  for t in "${service_tests[@]}"; do args+=(--skip "$t"); done
  cargo test --locked "${args[@]}"
  status=$?
  banner
  exit "$status"
fi

need=()
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
[ -x /usr/sbin/nats-server ] || command -v nats-server >/dev/null 2>&1 || need+=(nats-server)
if [ "${#need[@]}" -gt 0 ]; then
  echo "== installing ${need[*]} (Debian packages)"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "scripts/test.sh: ${need[*]} missing and no sudo to install them: install them, or run" >&2
      echo "FALCO_API_SKIP_SERVICES=1 scripts/test.sh to skip the tests that need them" >&2
      exit 1
    fi
    sudo="sudo"
  fi
  if ! { $sudo apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }; then
    echo "scripts/test.sh: installing ${need[*]} failed: install them, or run" >&2
    echo "FALCO_API_SKIP_SERVICES=1 scripts/test.sh to skip the tests that need them" >&2
    exit 1
  fi
fi

exec cargo test --locked "$@"
