#!/usr/bin/env bash
# Remove lecp from a cPanel server, as root. Users' data (their stores, keys and the certificates
# installed in cPanel) is never touched; /etc/lecp and /var/lib/lecp are kept unless --purge.
#
#   init/uninstall.sh [--root DIR] [--purge]
set -euo pipefail

ROOT=""
PURGE=0
LIVE=1
while [ $# -gt 0 ]; do
    case "$1" in
        --root) ROOT="${2%/}"; LIVE=0; shift 2 ;;
        --purge) PURGE=1; shift ;;
        -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
        *) echo "uninstall.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
say() { echo "lecp uninstall: $*"; }
[ "$(id -u)" = 0 ] || { echo "lecp uninstall: error: run me as root" >&2; exit 1; }
CPANEL="$ROOT/usr/local/cpanel"

if [ "$LIVE" = 1 ]; then
    if [ -f /etc/systemd/system/lecp.service ] && command -v systemctl >/dev/null; then
        systemctl disable --now lecp.service 2>/dev/null || true
    elif [ -x /etc/init.d/lecp ]; then
        /etc/init.d/lecp stop || true
    fi
fi
say "service, logrotate and chkservd files"
rm -f "$ROOT/etc/systemd/system/lecp.service" "$ROOT/etc/init.d/lecp" "$ROOT/etc/logrotate.d/lecp" \
      "$ROOT/etc/chkserv.d/lecp" "$ROOT/var/cpanel/chkservd/drivers/lecp"
if [ -f "$ROOT/etc/chkserv.d/chkservd.conf" ]; then
    sed -i '/^lecp:/d' "$ROOT/etc/chkserv.d/chkservd.conf"
fi
[ -x "$CPANEL/scripts/restartsrv_chkservd" ] && "$CPANEL/scripts/restartsrv_chkservd" >/dev/null 2>&1 || true
if [ "$LIVE" = 1 ] && command -v systemctl >/dev/null; then systemctl daemon-reload 2>/dev/null || true; fi

if [ -d "$ROOT/opt/lecp/share/cpanel-plugin" ] && [ -x "$CPANEL/scripts/uninstall_plugin" ]; then
    say "cPanel plugin"
    "$CPANEL/scripts/uninstall_plugin" "$ROOT/opt/lecp/share/cpanel-plugin" --theme=jupiter || true
fi
rm -rf "$CPANEL/base/frontend/jupiter/lecp"
say "program files in $ROOT/opt/lecp"
rm -rf "$ROOT/opt/lecp"
if [ "$(readlink "$ROOT/usr/local/sbin/lecp" 2>/dev/null)" = /opt/lecp/bin/lecp ]; then rm -f "$ROOT/usr/local/sbin/lecp"; fi
if [ "$PURGE" = 1 ]; then
    say "configuration and state (--purge)"
    rm -rf "$ROOT/etc/lecp" "$ROOT/var/lib/lecp" "$ROOT/var/log/lecp"
else
    say "kept $ROOT/etc/lecp and $ROOT/var/lib/lecp (remove them with --purge)"
fi
say "done; users' certificates stay installed in cPanel and their data stays in their homes"
