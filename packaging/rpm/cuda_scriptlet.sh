# hearth-cuda's scriptlets: nothing to do. The backend is a file in hearth's backend folder, read
# at the daemon's next start (`systemctl restart hearth`); `hearth info` shows whether it loaded.
:
