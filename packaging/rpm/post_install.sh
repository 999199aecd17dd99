# State directory with its owner and mode; the unit is known to systemd but not enabled.
systemd-tmpfiles --create /usr/lib/tmpfiles.d/hearth.conf >/dev/null 2>&1 || :
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || :
  if [ "$1" -eq 1 ]; then
    systemctl --no-reload preset hearth.service >/dev/null 2>&1 || :
  fi
fi
