"""Domain packages (driving, remote_sensing, medical) built on `interlace.core`."""
