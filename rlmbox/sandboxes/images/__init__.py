"""The sandbox image: recipe.json + rootfs.py (offline), Dockerfile (online), build.py."""
