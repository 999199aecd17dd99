# On upgrade: restart a running service on the new binary. The state in /var/lib/hearth stays.
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || :
  if [ "$1" -ge 1 ]; then
    systemctl try-restart hearth.service >/dev/null 2>&1 || :
  fi
fi
