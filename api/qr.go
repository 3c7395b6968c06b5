package api

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"

	"github.com/skip2/go-qrcode"
)

// qrModulePixels is the size of one QR module in the PNG: integer scaling
// keeps the edges sharp for phone cameras.
const qrModulePixels = 8

// maxQRContent bounds what is rendered; WhatsApp's codes are about 200 bytes.
const maxQRContent = 1024

var errQRTooLong = errors.New("api: QR content too long")

var qrPalette = color.Palette{color.White, color.Black}

// qrPNG renders content as a PNG QR code with a quiet zone, at medium error
// correction. Errors never contain the content.
func qrPNG(content string) ([]byte, error) {
	if len(content) > maxQRContent {
		return nil, errQRTooLong
	}
	q, err := qrcode.New(content, qrcode.Medium)
	if err != nil {
		return nil, fmt.Errorf("api: encode QR code (%d bytes): %w", len(content), err)
	}
	// Draw the module matrix ourselves: one row of pixels per module row,
	// copied down, is far cheaper than the encoder's per-pixel scaling.
	bitmap := q.Bitmap()
	n := len(bitmap)
	side := n * qrModulePixels
	img := image.NewPaletted(image.Rect(0, 0, side, side), qrPalette)
	for my, row := range bitmap {
		y0 := my * qrModulePixels
		first := img.Pix[y0*img.Stride : y0*img.Stride+side]
		for mx, dark := range row {
			if dark {
				for i := mx * qrModulePixels; i < (mx+1)*qrModulePixels; i++ {
					first[i] = 1
				}
			}
		}
		for dy := 1; dy < qrModulePixels; dy++ {
			copy(img.Pix[(y0+dy)*img.Stride:], first)
		}
	}
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	if err := enc.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("api: write QR PNG: %w", err)
	}
	return buf.Bytes(), nil
}
