"""End-to-end fine-tuning of C3D on GIFGIF+ (multi-label, 17 emotions): module, clip cache, runner."""
