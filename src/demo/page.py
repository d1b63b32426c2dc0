"""The page's layout (Gradio Blocks), thin on purpose: every action is a `Session` method.

Gradio is the convention of audio-ML demos (model hubs show models this way): its Audio
component uploads, records from the microphone and plays, and its server needs no front-end
code of ours. The page has fixed slots (three players, two pictures, a table) that each task
fills and labels; the element ids are what the browser test drives.
"""

from __future__ import annotations

import numpy as np

from src.demo.core import Session, Shown

N_AUDIO, N_IMAGES = 3, 2


def pcm16(audio: tuple[int, np.ndarray]) -> tuple[int, np.ndarray]:
    """(rate, int16 samples): what a player is given (Gradio would convert, with a warning)."""
    rate, x = audio
    return rate, (np.clip(np.asarray(x, dtype=np.float32), -1.0, 1.0) * 32767).astype(np.int16)


def slots(shown: Shown) -> list:
    """Component updates for a `Shown`, in the order of `build_page`'s outputs."""
    import gradio as gr
    import pandas as pd

    table = pd.DataFrame(shown.rows, columns=shown.header) if shown.header else pd.DataFrame()
    audio = list(shown.audio.items())
    images = list(shown.images.items())
    return [
        shown.message,
        gr.update(value=table, visible=bool(shown.rows)),
        *(
            gr.update(value=pcm16(audio[i][1]), label=audio[i][0], visible=True)
            if i < len(audio)
            else gr.update(value=None, visible=False)
            for i in range(N_AUDIO)
        ),
        *(
            gr.update(value=str(images[i][1]), label=images[i][0], visible=True)
            if i < len(images)
            else gr.update(value=None, visible=False)
            for i in range(N_IMAGES)
        ),
    ]


def build_page(session: Session, checkpoints: list[str], message: str = ""):
    """The Blocks of the page for a session that may already hold a loaded demo; `message`
    is the first status line (why a checkpoint found at start did not load)."""
    import gradio as gr

    def about() -> str:
        if session.demo is None:
            return "No checkpoint loaded."
        return f"`{session.ckpt_path}`: {session.demo.describe()}"

    def can_refine() -> bool:
        return bool(getattr(session.demo, "can_refine", False))

    with gr.Blocks(title="NSM: hear a checkpoint", analytics_enabled=False) as page:
        gr.Markdown("# Neural Spectral Modeling: hear a checkpoint")
        with gr.Row():
            ckpt = gr.Dropdown(
                choices=checkpoints,
                value=session.ckpt_path,
                label="checkpoint (runs under logs/)",
                allow_custom_value=True,
                elem_id="ckpt",
                scale=4,
            )
            load = gr.Button("Load", elem_id="load", scale=1)
        model = gr.Markdown(about(), elem_id="model")
        with gr.Row():
            sound = gr.Audio(
                sources=["upload", "microphone"],
                type="filepath",
                label="a sound: upload or record",
                elem_id="sound",
            )
            with gr.Column():
                records = session.records()
                record = gr.Dropdown(
                    choices=records,
                    value=None,
                    label="or pick a test record",
                    visible=bool(records),
                    elem_id="record",
                )
                refine = gr.Checkbox(
                    label="also refine through the synth (slower)",
                    visible=can_refine(),
                    elem_id="refine",
                )
                run = gr.Button("Predict", variant="primary", elem_id="run")
        status = gr.Markdown("" if session.demo else message, elem_id="status")
        table = gr.Dataframe(visible=False, elem_id="table", interactive=False)
        with gr.Row():
            players = [
                gr.Audio(visible=False, interactive=False, elem_id=f"out_audio_{i}")
                for i in range(N_AUDIO)
            ]
        pictures = [
            gr.Image(visible=False, type="filepath", interactive=False, elem_id=f"out_image_{i}")
            for i in range(N_IMAGES)
        ]

        def on_load(path):
            message = session.load(path)
            records = session.records()
            return (
                message,
                about(),
                gr.update(choices=records, value=None, visible=bool(records)),
                gr.update(visible=can_refine(), value=False),
            )

        def on_record(label):
            path, message = session.record(label)
            return (str(path) if path else gr.update(), message)

        def on_run(path, refine_on):
            return slots(session.answer(path, refine_on))

        load.click(on_load, [ckpt], [status, model, record, refine])
        record.change(on_record, [record], [sound, status])
        run.click(on_run, [sound, refine], [status, table, *players, *pictures])
    return page
