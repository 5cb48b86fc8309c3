"""Draws docs/icon.png, the 400x400 registry icon: a film strip whose frames are split by a diagonal cut and
closed into a loop arrow. Run: .venv/bin/python docs/make_icon.py"""
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

SIZE = 400
BG, STRIP, FRAME, ACCENT, TEXT = "#1d2330", "#e8ecf2", "#4a8fe7", "#f2a541", "#e8ecf2"


def draw_icon() -> Image.Image:
    img = Image.new("RGB", (SIZE, SIZE), BG)
    d = ImageDraw.Draw(img)
    # film strip with sprocket holes and three frames
    d.rounded_rectangle((40, 90, 360, 250), radius=18, fill=STRIP)
    for x in range(58, 350, 34):
        d.rectangle((x, 102, x + 14, 114), fill=BG)
        d.rectangle((x, 226, x + 14, 238), fill=BG)
    for i in range(3):
        x0 = 58 + i * 100
        d.rectangle((x0, 126, x0 + 84, 214), fill=FRAME)
    # the cut: a diagonal gap through the strip
    d.line((238, 70, 182, 270), fill=BG, width=14)
    d.line((238, 70, 182, 270), fill=ACCENT, width=6)
    # loop arrow under the strip (last frame back to the first)
    d.arc((70, 200, 330, 330), start=20, end=160, fill=ACCENT, width=10)
    d.polygon([(82, 262), (112, 266), (90, 292)], fill=ACCENT)
    font = ImageFont.load_default(size=56)
    d.text((SIZE // 2, 352), "vcut", fill=TEXT, font=font, anchor="mm")
    return img


if __name__ == "__main__":
    out = Path(__file__).with_name("icon.png")
    draw_icon().save(out, optimize=True)
    print(out, out.stat().st_size, "bytes")
