"""The core's demo training really learns: loss falls and accuracy is far above chance (4 classes)."""
import pytest

from dla_plugins.tools.demo import train_shapes_classifier


@pytest.mark.slow
def test_synthetic_shapes_training_learns():
    res = train_shapes_classifier('dla46_c', epochs=3, progress=False)
    assert res['final_loss'] < 0.5 * res['first_loss']
    assert res['val_accuracy'] > 0.8 > 3 * res['chance']
