"""Audio -> talking-head MP4: lip sync an avatar to speech (what ``face3d animate --video`` does).

    python examples/talking_head.py --text "Open the window, please."          # espeak-ng speaks it
    python examples/talking_head.py --audio speech.wav --avatar out/ -o talk.mp4   # your recording
    python examples/talking_head.py --audio speech.wav --text "..."               # with its transcript

With ``--text`` the visemes come from forced alignment of the transcript; without it they are
recognised from the audio. Writes the MP4 (H.264 + AAC) and the animation beside it (.json).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--audio", type=Path, help="speech (WAV/FLAC/OGG/MP3); default: espeak-ng speaking --text")
    ap.add_argument("--text", help="the transcript (forced alignment)")
    ap.add_argument("--avatar", default="default", help="a 'face3d reconstruct' folder, or a model name")
    ap.add_argument("-o", "--out", type=Path, default=Path("out/talk.mp4"))
    ap.add_argument("--size", type=int, default=384, help="video size in pixels (even)")
    args = ap.parse_args(argv)

    import face3d
    from face3d.animation.preview import write_preview

    args.out.parent.mkdir(parents=True, exist_ok=True)
    audio = args.audio
    if audio is None:
        from face3d.animation.lipsync.espeak import synthesize
        from face3d.io.audio import save_wav

        if not args.text:
            ap.error("give --audio, or --text for espeak-ng to speak")
        speech = synthesize(args.text)
        audio = args.out.with_suffix(".wav")
        save_wav(audio, speech.audio, speech.rate)
    anim = face3d.animate_audio(audio, text=args.text)
    anim.save(args.out.with_suffix(".json"))
    write_preview(anim, args.avatar, args.out, size=args.size)
    print(f"wrote {args.out}: {anim.n_frames} frames at {anim.fps:g} fps, visemes by {anim.meta['phoneme_method']}")
    return args.out


if __name__ == "__main__":
    main()
