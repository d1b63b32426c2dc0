"""Turn your own labelled recordings into a VIMH dataset: `python convert_audio.py [overrides]`.

A launcher for `src/convert.py`, kept at the root beside generate_vimh.py. Examples
(docs/own_data.md):
    python convert_audio.py source=folder source.path=/data/esc50_by_class
    python convert_audio.py source=speech_commands source.path=/data/speech_commands_v0.02 \
        spectrogram=kws_mel40 dataset.store_audio=true dataset.workers=4
    python convert_audio.py source=manifest source.path=/data/notes.csv \
        'source.labels={instrument: {type: categorical}}'
"""

from src.convert import main

if __name__ == "__main__":
    main()
