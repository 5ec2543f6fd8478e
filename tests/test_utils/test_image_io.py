"""The one image reader: 8-bit modes, 16-bit grayscale, transparency over black."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from s2c.utils.image_io import read_rgb_image


def test_sixteen_bit_grayscale_is_scaled_not_clipped_to_white(tmp_path):
    values = np.array([[0, 257 * 100, 65535, 1000]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / 'g16.png')
    assert Image.open(tmp_path / 'g16.png').mode.startswith('I')
    rgb = read_rgb_image(str(tmp_path / 'g16.png'))
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 4, 3)
    np.testing.assert_array_equal(rgb[0, :, 0], [0, 100, 255, 4])  # round(1000 / 257) = 4
    assert (rgb == rgb[..., :1]).all()


@pytest.mark.parametrize('mode', ['RGBA', 'LA'])
def test_transparency_is_composed_over_black(tmp_path, mode):
    if mode == 'RGBA':
        data = np.array([[[200, 100, 50, 255], [200, 100, 50, 0], [200, 100, 50, 128]]],
                        np.uint8)
        expected = [[200, 100, 50], [0, 0, 0], [100, 50, 25]]
    else:
        data = np.array([[[200, 255], [200, 0], [200, 128]]], np.uint8)
        expected = [[200] * 3, [0] * 3, [100] * 3]
    Image.fromarray(data, mode=mode).save(tmp_path / 'a.png')
    rgb = read_rgb_image(str(tmp_path / 'a.png')).astype(int)
    assert np.abs(rgb[0] - np.array(expected)).max() <= 1


def test_eight_bit_modes_and_errors(tmp_path):
    Image.fromarray(np.array([[0, 128, 255]], np.uint8)).save(tmp_path / 'l.png')
    np.testing.assert_array_equal(read_rgb_image(str(tmp_path / 'l.png'))[0, :, 1], [0, 128, 255])
    (tmp_path / 'bad.jpg').write_bytes(b'not an image')
    with pytest.raises(ValueError, match='bad.jpg'):
        read_rgb_image(str(tmp_path / 'bad.jpg'))
    with pytest.raises(FileNotFoundError):
        read_rgb_image(str(tmp_path / 'none.jpg'))
