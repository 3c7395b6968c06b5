package api

import (
	"errors"
	"fmt"

	"github.com/skip2/go-qrcode"
)

// qrModulePixels is the size of one QR module in the PNG: integer scaling
// keeps the edges sharp for phone cameras.
const qrModulePixels = 8

// maxQRContent bounds what is rendered; WhatsApp's codes are about 200 bytes.
const maxQRContent = 1024

var errQRTooLong = errors.New("api: QR content too long")

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
	png, err := q.PNG(-qrModulePixels)
	if err != nil {
		return nil, fmt.Errorf("api: write QR PNG: %w", err)
	}
	return png, nil
}
