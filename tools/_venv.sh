# Sourced by the tools/ wrappers: make sure the project's .venv exists and has the project installed.
# Progress goes to stderr only, so stdout stays pure JSON.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"

ensure_venv() {
    local extras="$1" marker="$2"
    [ -e "$marker" ] && return 0
    local python="${PYTHON:-$(command -v python3 || command -v python)}"
    if [ -z "$python" ]; then
        echo "ibg-audit: Python 3.11+ is needed (python3 not found)" >&2
        return 1
    fi
    mkdir -p "$venv"
    (
        # One installer at a time: parallel first runs wait here instead of corrupting the venv.
        if command -v flock >/dev/null 2>&1; then flock 9; fi
        [ -e "$marker" ] && exit 0
        echo "ibg-audit: setting up $venv (first run only; this takes a minute)..." >&2
        [ -x "$venv/bin/python" ] || "$python" -m venv "$venv" >&2
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$root$extras" >&2
        touch "$marker"
    ) 9>"$venv/.install.lock"
}

ensure_runtime() { ensure_venv "" "$venv/.ibg-audit-installed"; }
ensure_test_deps() { ensure_runtime && ensure_venv "[test]" "$venv/.ibg-audit-test-installed"; }

# Inside the project the audit store defaults to data/audit.db (the CLI's own default is per user).
export IBG_AUDIT_DB="${IBG_AUDIT_DB:-$root/data/audit.db}"
