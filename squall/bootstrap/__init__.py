"""Bootstrap over SSH: deliver the controller assets, start the cluster, wait until it is ready."""
