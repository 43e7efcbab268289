"""gifemo: recognising perceived emotions in animated GIFs (GIFGIF+, Chen, Rudovic & Picard).

Stages: GIF decoding (:mod:`gifemo.data`) → C3D features (:mod:`gifemo.features`) →
multi-task heads and penalties (:mod:`gifemo.models`) → evaluation (:mod:`gifemo.eval`).
"""

__version__ = "0.1.0"
