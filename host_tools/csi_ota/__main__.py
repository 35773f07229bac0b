from csi_ota.cli import run

run()
