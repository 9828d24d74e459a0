"""Running and configuring mosquitto: the process, its config, passwords, ACLs and TLS."""
