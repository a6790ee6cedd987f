"""The decoder service: normalised latent chunks in, video frames out (RAW_RGB, JPEG or fragmented MP4)."""
