"""gifemo: recognising perceived emotions in animated GIFs (GIFGIF+, Chen, Rudovic & Picard).

Layers, each importing only from the ones before it (docs/architecture.md): emotions → data →
backbones → features → models → eval → finetune → active → runners → apps → bench.
"""

__version__ = "0.1.0"
