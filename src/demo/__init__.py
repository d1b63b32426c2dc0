"""The local demo page (`python src/app.py`): hear and see what a checkpoint does.

The page's logic lives in plain functions and classes (`core`, `estimation`, `frames`), each
taking a sound file and returning what the page shows (`Shown`), so it is tested without a
browser; `page` lays it out with Gradio and turns a user error into a message on the page.
"""
