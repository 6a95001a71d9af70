"""Callbacks with Keras's hooks: History and the progress bar."""
import os
import sys
import time


class Callback:
    """Base class; override any hook. `self.model` and `self.params` are set by fit."""

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_train_begin(self, logs=None): pass
    def on_train_end(self, logs=None): pass
    def on_epoch_begin(self, epoch, logs=None): pass
    def on_epoch_end(self, epoch, logs=None): pass
    def on_train_batch_begin(self, batch, logs=None): pass
    def on_train_batch_end(self, batch, logs=None): pass
    def on_test_begin(self, logs=None): pass
    def on_test_end(self, logs=None): pass
    def on_test_batch_begin(self, batch, logs=None): pass
    def on_test_batch_end(self, batch, logs=None): pass
    def on_predict_begin(self, logs=None): pass
    def on_predict_end(self, logs=None): pass
    def on_predict_batch_begin(self, batch, logs=None): pass
    def on_predict_batch_end(self, batch, logs=None): pass


class CallbackList:
    """Fans each hook out to a list of callbacks."""

    def __init__(self, callbacks, model, params):
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be Callback instances. Received: {cb!r}")
            cb.set_model(model)
            cb.set_params(params)

    def __getattr__(self, hook):
        if not hook.startswith("on_"):
            raise AttributeError(hook)

        def call(*args, **kwargs):
            for cb in self.callbacks:
                getattr(cb, hook)(*args, **kwargs)
        return call


class History(Callback):
    """Records the epoch-end logs: history.history['loss'], ['val_accuracy'], ..."""

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)
        if self.model is not None:
            self.model.history = self


def _interactive(stream):
    if "ipykernel" in sys.modules:
        return True
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _fmt_value(v):
    return f"{v:.4f}" if abs(v) > 1e-3 or v == 0 else f"{v:.4e}"


def _fmt_step(seconds):
    if seconds >= 1:
        return f"{seconds:.0f}s/step"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/step"
    return f"{seconds * 1e6:.0f}us/step"


def format_logs(logs):
    """Keras's order: metrics and loss alphabetically, then the val_ entries."""
    keys = sorted(k for k in logs if not k.startswith("val_"))
    keys += sorted(k for k in logs if k.startswith("val_"))
    return " - ".join(f"{k}: {_fmt_value(logs[k])}" for k in keys)


class Progbar:
    """Keras-style progress bar. On a terminal or notebook it redraws in place;
    elsewhere (a log file) it writes one clean line when done."""

    WIDTH = 20

    def __init__(self, target, verbose=1, stream=None):
        self.target = target
        self.verbose = verbose
        self.stream = stream or sys.stdout
        self.interactive = _interactive(self.stream)
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self._drawn = 0  # length of the line on screen, to blank a longer previous one

    def update(self, current, logs=None, finalize=False):
        if self.verbose != 1 or not self.interactive:
            if finalize:
                self._final(current, logs)
            return
        now = time.perf_counter()
        if not finalize and now - self._last_draw < 0.05:
            return
        self._last_draw = now
        line = self._line(current, logs, now)
        pad = " " * max(0, self._drawn - len(line))
        self._drawn = 0 if finalize else len(line)
        self.stream.write("\r" + line + pad + ("\n" if finalize else ""))
        self.stream.flush()

    def _final(self, current, logs):
        now = time.perf_counter()
        if self.verbose == 1:
            self.stream.write(self._line(current, logs, now) + "\n")
        elif self.verbose == 2:
            elapsed = now - self.start
            per = elapsed / max(current, 1)
            parts = [f"{current}/{self.target}", f"{elapsed:.0f}s", _fmt_step(per)]
            if logs:
                parts.append(format_logs(logs))
            self.stream.write(" - ".join(parts) + "\n")
        self.stream.flush()

    def _line(self, current, logs, now):
        elapsed = now - self.start
        frac = current / self.target if self.target else 1.0
        filled = int(self.WIDTH * frac)
        bar = "\u2501" * filled + " " * (self.WIDTH - filled)
        width = len(str(self.target))
        per = elapsed / max(current, 1)
        if current < self.target:
            eta = per * (self.target - current)
            timing = f"{eta:.0f}s {_fmt_step(per)}"
        else:
            timing = f"{elapsed:.0f}s {_fmt_step(per)}"
        line = f"{current:>{width}}/{self.target} {bar} {timing}"
        if logs:
            line += " - " + format_logs(logs)
        return line


class ProgbarLogger(Callback):
    """Prints `Epoch i/N` (when N > 1) and a progress bar (verbose=1) or one line per
    epoch (verbose=2)."""

    def __init__(self, verbose=1):
        super().__init__()
        self.verbose = verbose
        self._bar = None

    def on_epoch_begin(self, epoch, logs=None):
        epochs = self.params.get("epochs", 1)
        if self.verbose and epochs > 1:
            print(f"Epoch {epoch + 1}/{epochs}", flush=True)
        self._bar = Progbar(self.params.get("steps"), self.verbose)

    def on_train_batch_end(self, batch, logs=None):
        self._bar.update(batch + 1, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._bar.update(self.params.get("steps"), logs, finalize=True)

    def on_test_begin(self, logs=None):
        if self.model is not None and not getattr(self.model, "_in_fit", False):
            self._bar = Progbar(self.params.get("steps"), self.verbose)

    def on_test_batch_end(self, batch, logs=None):
        if not getattr(self.model, "_in_fit", False):
            self._bar.update(batch + 1, logs)

    def on_test_end(self, logs=None):
        if not getattr(self.model, "_in_fit", False):
            self._bar.update(self.params.get("steps"), logs, finalize=True)

    def on_predict_begin(self, logs=None):
        self._bar = Progbar(self.params.get("steps"), self.verbose)

    def on_predict_batch_end(self, batch, logs=None):
        self._bar.update(batch + 1)

    def on_predict_end(self, logs=None):
        self._bar.update(self.params.get("steps"), None, finalize=True)
