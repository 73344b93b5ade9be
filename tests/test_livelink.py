"""Live Link Face CSV and plain ARKit CSV: round trips, exact header, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

from face3d.animation.animation import Animation
from face3d.arkit import ARKIT_INDEX
from face3d.errors import FileFormatError
from face3d.animation.livelink import (LIVELINK_COLUMNS, axis_angle_to_ypr, format_timecode, parse_timecode, read_csv,
                                write_arkit_csv, write_livelink_csv, ypr_to_axis_angle)


def _anim(T=90, fps=60.0):
    rng = np.random.default_rng(0)
    return Animation(fps=fps, arkit=rng.uniform(0, 1, (T, 52)), head_pose=rng.normal(0, 0.2, (T, 3)), eyes=rng.normal(0, 0.1, (T, 6)))


def test_header_is_live_link_face():
    assert len(LIVELINK_COLUMNS) == 63
    assert LIVELINK_COLUMNS[:4] == ("Timecode", "BlendShapeCount", "EyeBlinkLeft", "EyeLookDownLeft")
    assert LIVELINK_COLUMNS[16:20] == ("JawForward", "JawRight", "JawLeft", "JawOpen")
    assert LIVELINK_COLUMNS[23:25] == ("MouthRight", "MouthLeft")
    assert LIVELINK_COLUMNS[53:] == ("TongueOut", "HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch",
                                     "LeftEyeRoll", "RightEyeYaw", "RightEyePitch", "RightEyeRoll")


@pytest.mark.parametrize("fps", [60.0, 30.0])
def test_livelink_round_trip(tmp_path, fps):
    a = _anim(fps=fps)
    p = write_livelink_csv(a, tmp_path / "take.csv")
    lines = p.read_text().splitlines()
    assert lines[0] == ",".join(LIVELINK_COLUMNS)
    assert lines[1].startswith("00:00:00:00.000,61,")
    b = Animation.load(p)
    assert b.fps == fps and b.n_frames == a.n_frames
    np.testing.assert_allclose(b.arkit, a.arkit, atol=1e-6)
    np.testing.assert_allclose(b.head_pose, a.head_pose, atol=1e-5)
    np.testing.assert_allclose(b.eyes, a.eyes, atol=1e-5)
    # the swapped columns hold the right shapes
    row = lines[1].split(",")
    assert float(row[LIVELINK_COLUMNS.index("JawLeft")]) == pytest.approx(a.arkit[0, ARKIT_INDEX["jawLeft"]], abs=1e-6)


def test_timecodes():
    assert parse_timecode("00:01:02:15.500", 30) == pytest.approx(62 + 15.5 / 30)
    assert format_timecode(62 + 15.5 / 30, 30) == "00:01:02:15.500"
    assert format_timecode(3661.0, 60) == "01:01:01:00.000"
    ypr = np.array([[0.3, -0.2, 0.1], [0.0, 0.0, 0.0]], np.float32)
    np.testing.assert_allclose(axis_angle_to_ypr(ypr_to_axis_angle(ypr)), ypr, atol=1e-6)
    yaw_only = ypr_to_axis_angle(np.array([[0.5, 0.0, 0.0]], np.float32))
    np.testing.assert_allclose(yaw_only, [[0.0, 0.5, 0.0]], atol=1e-6)


def test_plain_csv_round_trip_and_subset(tmp_path):
    a = _anim(fps=25.0)
    p = write_arkit_csv(a, tmp_path / "w.csv")
    b = read_csv(p)
    assert b.fps == pytest.approx(25.0, rel=1e-4)
    np.testing.assert_allclose(b.arkit, a.arkit, atol=1e-6)
    q = tmp_path / "sub.csv"
    q.write_text("JAWOPEN,mouthSmileLeft\n0.5,0.25\n1,0\n")
    c = read_csv(q, fps=10)
    assert c.fps == 10 and c.n_frames == 2
    assert c.weight("jawOpen").tolist() == [0.5, 1.0] and c.weight("mouthSmileLeft").tolist() == [0.25, 0.0]
    assert c.weight("eyeBlinkLeft").tolist() == [0.0, 0.0]


@pytest.mark.parametrize("content, match", [
    ("", "header and at least one data row"),
    ("a,b\n1,2\n", "no ARKit blendshape columns"),
    ("jawOpen,bogus\n1,2\n", "unknown columns"),
    ("jawOpen\nabc\n", "row 2, column 'jawOpen'"),
    ("time,jawOpen\n0.1,1\n0.05,1\n", "not strictly increasing"),
    ("Timecode,BlendShapeCount,EyeBlinkLeft\n00:00:00:00.000,61,0\n", "lacks columns"),
])
def test_bad_csv(tmp_path, content, match):
    p = tmp_path / "bad.csv"
    p.write_text(content)
    with pytest.raises(FileFormatError, match=match) as e:
        read_csv(p)
    assert "bad.csv" in str(e.value)


def test_bad_livelink_timecode_and_binary(tmp_path):
    a = _anim(T=3)
    p = write_livelink_csv(a, tmp_path / "t.csv")
    lines = p.read_text().splitlines()
    lines[2] = "xx" + lines[2][2:].replace(":", "-", 1)
    p.write_text("\n".join(lines))
    with pytest.raises(FileFormatError, match="row 3: bad Timecode"):
        read_csv(p)
    b = tmp_path / "bin.csv"
    b.write_bytes(b"\xff\xfe\x00\x01" * 10)
    with pytest.raises(FileFormatError, match="UTF-8"):
        read_csv(b)
    with pytest.raises(FileFormatError, match="not found"):
        read_csv(tmp_path / "missing.csv")
