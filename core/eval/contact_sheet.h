// Contact sheets: a labelled grid of equally sized images (e.g. methods x ratios of
// one view), with a tiny built-in 5x7 bitmap font so no font library is needed.
#pragma once

#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "scene/image.h"

namespace flexgs {

// Font cell: glyphs are 5x7 pixels, advancing 6 pixels, drawn at an integer scale.
inline constexpr int kGlyphWidth = 5;
inline constexpr int kGlyphHeight = 7;
inline constexpr int kGlyphAdvance = 6;

// Width in pixels of `text` drawn at `scale` (no trailing gap).
int TextWidth(std::string_view text, int scale);

// Draws `text` with its top-left corner at (x, y), clipped to the image. Letters are
// shown upper case; characters without a glyph are drawn as a hollow box.
void DrawText(Image& image, int x, int y, std::string_view text, int scale, const std::array<float, 3>& color);

struct ContactSheetLayout {
  std::vector<std::string> column_labels;  // drawn above each column
  std::vector<std::string> row_labels;     // drawn left of each row
  // Optional, [row][column]: a line written inside the cell's bottom-left corner on a
  // dark band (e.g. that cell's PSNR and bytes), so a sheet reads without the report.
  // Empty, or one entry per cell; an empty string leaves its cell untouched.
  std::vector<std::vector<std::string>> cell_captions;
};

// Places cells[r][c] (each cell_width x cell_height, 3 channels; null = left blank) on a
// dark grid with the labels. Every row must have column_labels.size() cells and there
// must be row_labels.size() rows; a cell of another size, or cell_captions of another
// shape, is InvalidArgument. The label scale is 2 for cells at least 160 pixels tall,
// else 1; captions use the largest scale (at most the label scale) at which all of them fit.
absl::StatusOr<Image> ComposeContactSheet(const ContactSheetLayout& layout,
                                          const std::vector<std::vector<const Image*>>& cells, int cell_width,
                                          int cell_height);

// One part of a stacked image: a caption line and the image under it (3 channels).
struct CaptionedImage {
  std::string caption;
  const Image* image = nullptr;
};

// Stacks `parts` top to bottom on the contact sheet's background, each under its
// caption drawn at `scale`, left-aligned; as wide as the widest part. Lets one
// contact.png show several views (a framed one and a close-up) with the sheet's
// labels intact. No parts, a null or non-RGB image, or a scale outside 1..8 is
// InvalidArgument.
absl::StatusOr<Image> StackWithCaptions(const std::vector<CaptionedImage>& parts, int scale);

}  // namespace flexgs
