"""The logic behind examples/interactive.ipynb: importable, so tests call it with widget values."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from models.controls import all_keys
from models.instruments import gm_names, resolve_instrument
from models.options import sampling_from_options
from models.runtime import DEFAULT_MODEL_DIR, read_card
from training.render import RenderSettings, render


def generate_piece(temperature: float | None, notes: int, instrument: str, seed: int | None = None,
                   out: Path | None = None, density: str = "auto", key: str = "none") -> dict:
    """Render one piece with WAV and plot; returns the summary plus paths to the MIDI, WAV and PNG.

    `temperature` None takes the model card's; `density` is notes/s, 'auto' or 'none'; `key` e.g. 'D minor'.
    """
    out = Path(out or tempfile.mkdtemp(prefix="cadenza-notebook-"))
    sampling = sampling_from_options(read_card(DEFAULT_MODEL_DIR), {"temperature": temperature, "density": str(density),
                                                                    "key_name": key})
    settings = RenderSettings(out=out, count=1, notes=int(notes), sampling=sampling,
                              program=resolve_instrument(instrument), seed=seed, wav=True, plots=True, progress=False)
    summary = render(settings)
    piece = summary["pieces"][0]
    return {"summary": summary, "midi": out / piece["file"], "wav": out / piece["wav"], "plot": out / piece["plot"]}


def build_interface():
    """Temperature and length sliders, an instrument dropdown and a Generate button (needs cadenza[notebook])."""
    import ipywidgets as widgets
    from IPython.display import Audio, Image, display

    temperature = widgets.FloatSlider(value=1.0, min=0.1, max=2.0, step=0.05, description="temperature")
    length = widgets.IntSlider(value=128, min=16, max=1024, step=16, description="notes")
    instrument = widgets.Dropdown(options=gm_names(), value="Acoustic Grand Piano", description="instrument")
    density = widgets.Dropdown(options=["auto", "none", "4", "6", "8", "12", "16"], value="auto", description="notes/s")
    key = widgets.Dropdown(options=["none"] + [str(k) for k in all_keys()], value="none", description="key")
    button = widgets.Button(description="Generate", button_style="primary")
    output = widgets.Output()

    def on_click(_):
        with output:
            output.clear_output()
            result = generate_piece(temperature.value, length.value, instrument.value, seed=int(np.random.randint(1 << 30)),
                                    density=density.value, key=key.value)
            display(Image(filename=str(result["plot"])))
            display(Audio(filename=str(result["wav"])))

    button.on_click(on_click)
    return widgets.VBox([temperature, length, instrument, density, key, button, output])
