# The service user must exist before files owned by its group are installed.
if command -v systemd-sysusers >/dev/null 2>&1; then
  systemd-sysusers --replace=/usr/lib/sysusers.d/hearth.conf - <<'SYSUSERS' || :
u hearth - "hearth inference daemon" /var/lib/hearth /usr/sbin/nologin
m hearth video
m hearth render
SYSUSERS
fi
