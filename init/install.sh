#!/usr/bin/env bash
# Install (or upgrade) lecp on a cPanel server, as root. Safe to run again.
#
#   init/install.sh [--root DIR] [--source DIR] [--python PATH] [--init systemd|sysv] [--no-start]
#
# --root installs into DIR as if it were / (for tests and packaging); it implies --no-start.
set -euo pipefail

ROOT=""
SOURCE="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON=""
INIT=""
START=1
while [ $# -gt 0 ]; do
    case "$1" in
        --root) ROOT="${2%/}"; START=0; shift 2 ;;
        --source) SOURCE="$2"; shift 2 ;;
        --python) PYTHON="$2"; shift 2 ;;
        --init) INIT="$2"; shift 2 ;;
        --no-start) START=0; shift ;;
        -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

say() { echo "lecp install: $*"; }
die() { echo "lecp install: error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run me as root (I install a service and a cPanel plugin)"
[ -f "$SOURCE/pyproject.toml" ] && [ -f "$SOURCE/cgi/lecp.live.cgi" ] || die "$SOURCE is not a lecp source tree (--source)"

# A Python 3.11 or newer that every user can run: the page and the workers run as cPanel users.
if [ -z "$PYTHON" ]; then
    for candidate in /usr/bin/python3.13 /usr/bin/python3.12 /usr/bin/python3.11 /usr/bin/python3; do
        if [ -x "$candidate" ] && "$candidate" -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            PYTHON="$candidate"; break
        fi
    done
fi
[ -n "$PYTHON" ] || die "no Python 3.11+ with venv found in /usr/bin; install one (e.g. dnf install python3.11) or pass --python"
"$PYTHON" -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' || die "$PYTHON is not Python 3.11+ with venv"

CPANEL="$ROOT/usr/local/cpanel"
[ -d "$CPANEL" ] || say "warning: $CPANEL not found; the cPanel plugin step will be skipped"
if [ -z "$INIT" ]; then
    if [ -d /run/systemd/system ] || [ -n "$ROOT" ]; then INIT=systemd; else INIT=sysv; fi
fi

PREFIX="$ROOT/opt/lecp"
say "virtualenv in $PREFIX (Python: $PYTHON)"
if [ ! -x "$PREFIX/bin/python" ]; then
    "$PYTHON" -m venv "$PREFIX"
fi
"$PREFIX/bin/python" -m pip install -q --upgrade pip >/dev/null
"$PREFIX/bin/python" -m pip install -q --upgrade "$SOURCE"
# twistd finds lecp through Twisted's plugin cache: write it now, as root (the daemon may not).
"$PREFIX/bin/python" -c 'from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))'
mkdir -p "$PREFIX/share/cpanel-plugin"
cp "$SOURCE/README.md" "$PREFIX/share/README.md"
cp "$SOURCE/cgi/install.json" "$SOURCE/cgi/lecp.svg" "$PREFIX/share/cpanel-plugin/"
chmod -R go+rX "$PREFIX"
say "the admin command: $ROOT/usr/local/sbin/lecp"
install -d -m 0755 "$ROOT/usr/local/sbin"
ln -sfn /opt/lecp/bin/lecp "$ROOT/usr/local/sbin/lecp"

say "configuration in $ROOT/etc/lecp (kept if present)"
install -d -m 0755 "$ROOT/etc/lecp"
[ -f "$ROOT/etc/lecp/lecp.toml" ] || install -m 0644 "$SOURCE/init/lecp.toml" "$ROOT/etc/lecp/lecp.toml"
"$PREFIX/bin/python" -c "import sys; from lecp.config import load; load(sys.argv[1])" "$ROOT/etc/lecp/lecp.toml" \
    || die "$ROOT/etc/lecp/lecp.toml is not valid; fix it and run me again"
HEALTH_PORT="$("$PREFIX/bin/python" -c "import sys; from lecp.config import load; print(load(sys.argv[1]).health_port)" "$ROOT/etc/lecp/lecp.toml")"
install -d -m 0700 "$ROOT/var/lib/lecp"
install -d -m 0750 "$ROOT/var/log/lecp"

if [ -d "$CPANEL" ]; then
    say "cPanel plugin (Security » Let's Encrypt SSL)"
    THEME="$CPANEL/base/frontend/jupiter/lecp"
    install -d -m 0755 "$THEME"
    { echo "#!/opt/lecp/bin/python"; tail -n +2 "$SOURCE/cgi/lecp.live.cgi"; } > "$THEME/lecp.live.cgi.new"
    chmod 0755 "$THEME/lecp.live.cgi.new" && mv -f "$THEME/lecp.live.cgi.new" "$THEME/lecp.live.cgi"
    install -m 0644 "$SOURCE/cgi/lecp.svg" "$SOURCE/cgi/install.json" "$THEME/"
    "$CPANEL/scripts/install_plugin" "$PREFIX/share/cpanel-plugin" --theme=jupiter
fi

say "service ($INIT)"
if [ "$INIT" = systemd ]; then
    install -d -m 0755 "$ROOT/etc/systemd/system"
    install -m 0644 "$SOURCE/init/lecp.service" "$ROOT/etc/systemd/system/lecp.service"
    RESTART="/usr/bin/systemctl restart lecp.service"
else
    install -d -m 0755 "$ROOT/etc/init.d"
    install -m 0755 "$SOURCE/init/lecp.sysv" "$ROOT/etc/init.d/lecp"
    RESTART="/etc/init.d/lecp restart"
fi
install -d -m 0755 "$ROOT/etc/logrotate.d"
install -m 0644 "$SOURCE/init/lecp.logrotate" "$ROOT/etc/logrotate.d/lecp"

say "chkservd monitoring of http://127.0.0.1:$HEALTH_PORT/alive"
DRIVER="service[lecp]=$HEALTH_PORT,GET /alive HTTP/1.0,HTTP/1.. 200,$RESTART,x,root"
for folder in "$ROOT/etc/chkserv.d" "$ROOT/var/cpanel/chkservd/drivers"; do
    install -d -m 0755 "$folder"
    echo "$DRIVER" > "$folder/lecp"
done
touch "$ROOT/etc/chkserv.d/chkservd.conf"
grep -q '^lecp:' "$ROOT/etc/chkserv.d/chkservd.conf" || echo 'lecp:1' >> "$ROOT/etc/chkserv.d/chkservd.conf"
[ -x "$CPANEL/scripts/restartsrv_chkservd" ] && "$CPANEL/scripts/restartsrv_chkservd" >/dev/null 2>&1 || true

if [ "$START" = 1 ]; then
    say "starting"
    if [ "$INIT" = systemd ]; then
        systemctl daemon-reload && systemctl enable lecp.service && systemctl restart lecp.service
    else
        command -v chkconfig >/dev/null && chkconfig --add lecp || update-rc.d lecp defaults || true
        /etc/init.d/lecp restart
    fi
fi
say "done: lecp is installed. Health: curl http://127.0.0.1:$HEALTH_PORT/health"
