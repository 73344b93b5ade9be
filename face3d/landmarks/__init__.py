"""Face landmarks: MediaPipe 478-point detection, the 478 -> iBUG-68 mapping, user landmark files."""

from face3d.landmarks.detector import FaceLandmarks, detect_landmarks
from face3d.landmarks.files import load_landmarks_file
from face3d.landmarks.mapping import mediapipe_to_ibug68

__all__ = ["FaceLandmarks", "detect_landmarks", "load_landmarks_file", "mediapipe_to_ibug68"]
