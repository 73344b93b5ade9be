"""Face landmarks: MediaPipe 478-point detection, the 478 -> iBUG-68 mapping, the learned 68-point
regressor (trained on synthetic faces only), user landmark files."""

from face3d.landmarks.detector import FaceLandmarks, detect_landmarks
from face3d.landmarks.files import load_landmarks_file
from face3d.landmarks.mapping import mediapipe_to_ibug68
from face3d.landmarks.regressor import LandmarkRegressor, RegressorResult

__all__ = ["FaceLandmarks", "LandmarkRegressor", "RegressorResult", "detect_landmarks", "load_landmarks_file", "mediapipe_to_ibug68"]
