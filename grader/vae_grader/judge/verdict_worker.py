"""The verdict process: reads packed probe answers on stdin, writes rulings on stdout.

Started (confined and watched) by :class:`vae_grader.judge.confined.ConfinedJudge`, one per
submission. Each request is two length-prefixed frames, a JSON header (``grade_id``, ``salt``) and
the packed answer; each reply one frame of JSON (:meth:`vae_grader.judge.rulings.Ruling.to_json`). The
first reply, ``{"ready": true}``, comes once Keras is imported. What the libraries print goes to
stderr, never into the replies: the protocol has a file descriptor of its own.
"""

from __future__ import annotations

import json
import os
import sys


def main() -> int:
    channel = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed by Keras, TensorFlow or h5py goes to stderr
    sys.stdout = sys.stderr
    requests = sys.stdin.buffer

    import keras

    from vae_grader.judge import rulings as judge
    from vae_grader.judge.confined import read_frame, write_frame

    write_frame(channel, json.dumps({"ready": True}).encode())
    while True:
        header = read_frame(requests)
        blob = read_frame(requests) if header is not None else None
        if header is None or blob is None:
            return 0
        request = json.loads(header)
        test = judge.judged(request.get("grade_id"))
        if test is None:
            reply: dict = {"error": f"no verdict for {request.get('grade_id')!r}"}
        else:
            reply = judge.rule(test, blob, int(request.get("salt", 0))).to_json()
        write_frame(channel, json.dumps(reply).encode())
        keras.backend.clear_session()  # one verdict's models never weigh on the next


if __name__ == "__main__":
    raise SystemExit(main())
