#include "eval/contact_sheet.h"

#include <algorithm>
#include <cctype>

#include "absl/strings/str_cat.h"

namespace flexgs {
namespace {

struct Glyph {
  char c;
  const char* rows[kGlyphHeight];  // '#' = ink, anything else = blank
};

// A classic 5x7 font, written out as pictures so that it can be checked by eye.
constexpr Glyph kFont[] = {
    {'A', {".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"}},
    {'B', {"####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."}},
    {'C', {".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."}},
    {'D', {"###..", "#..#.", "#...#", "#...#", "#...#", "#..#.", "###.."}},
    {'E', {"#####", "#....", "#....", "####.", "#....", "#....", "#####"}},
    {'F', {"#####", "#....", "#....", "####.", "#....", "#....", "#...."}},
    {'G', {".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"}},
    {'H', {"#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"}},
    {'I', {".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."}},
    {'J', {"..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."}},
    {'K', {"#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"}},
    {'L', {"#....", "#....", "#....", "#....", "#....", "#....", "#####"}},
    {'M', {"#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"}},
    {'N', {"#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#"}},
    {'O', {".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."}},
    {'P', {"####.", "#...#", "#...#", "####.", "#....", "#....", "#...."}},
    {'Q', {".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"}},
    {'R', {"####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"}},
    {'S', {".####", "#....", "#....", ".###.", "....#", "....#", "####."}},
    {'T', {"#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."}},
    {'U', {"#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."}},
    {'V', {"#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."}},
    {'W', {"#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#."}},
    {'X', {"#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"}},
    {'Y', {"#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."}},
    {'Z', {"#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"}},
    {'0', {".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."}},
    {'1', {"..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."}},
    {'2', {".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"}},
    {'3', {"#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."}},
    {'4', {"...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."}},
    {'5', {"#####", "#....", "####.", "....#", "....#", "#...#", ".###."}},
    {'6', {"..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."}},
    {'7', {"#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."}},
    {'8', {".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."}},
    {'9', {".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."}},
    {' ', {".....", ".....", ".....", ".....", ".....", ".....", "....."}},
    {'-', {".....", ".....", ".....", "#####", ".....", ".....", "....."}},
    {'_', {".....", ".....", ".....", ".....", ".....", ".....", "#####"}},
    {'+', {".....", "..#..", "..#..", "#####", "..#..", "..#..", "....."}},
    {'=', {".....", ".....", "#####", ".....", "#####", ".....", "....."}},
    {'.', {".....", ".....", ".....", ".....", ".....", ".##..", ".##.."}},
    {',', {".....", ".....", ".....", ".....", ".##..", "..#..", ".#..."}},
    {':', {".....", ".##..", ".##..", ".....", ".##..", ".##..", "....."}},
    {'%', {"##...", "##..#", "...#.", "..#..", ".#...", "#..##", "...##"}},
    {'/', {".....", "....#", "...#.", "..#..", ".#...", "#....", "....."}},
    {'(', {"...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#."}},
    {')', {".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#..."}},
    {'*', {".....", "..#..", "#.#.#", ".###.", "#.#.#", "..#..", "....."}},
};

constexpr Glyph kMissing = {'?', {"#####", "#...#", "#...#", "#...#", "#...#", "#...#", "#####"}};

const Glyph& FindGlyph(char c) {
  const char u = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (const Glyph& g : kFont)
    if (g.c == u) return g;
  return kMissing;
}

void FillRect(Image& image, int x0, int y0, int w, int h, const std::array<float, 3>& color) {
  for (int y = std::max(0, y0); y < std::min(image.height, y0 + h); ++y)
    for (int x = std::max(0, x0); x < std::min(image.width, x0 + w); ++x)
      for (int c = 0; c < std::min(3, image.channels); ++c) image.at(x, y, c) = color[c];
}

constexpr std::array<float, 3> kSheetBackground = {0.18f, 0.18f, 0.18f};
constexpr std::array<float, 3> kInk = {1.0f, 1.0f, 1.0f};

}  // namespace

int TextWidth(std::string_view text, int scale) {
  if (text.empty()) return 0;
  return (static_cast<int>(text.size()) * kGlyphAdvance - (kGlyphAdvance - kGlyphWidth)) * scale;
}

void DrawText(Image& image, int x, int y, std::string_view text, int scale, const std::array<float, 3>& color) {
  for (size_t i = 0; i < text.size(); ++i) {
    const Glyph& g = FindGlyph(text[i]);
    const int gx = x + static_cast<int>(i) * kGlyphAdvance * scale;
    for (int r = 0; r < kGlyphHeight; ++r)
      for (int c = 0; c < kGlyphWidth; ++c)
        if (g.rows[r][c] == '#') FillRect(image, gx + c * scale, y + r * scale, scale, scale, color);
  }
}

namespace {

// The scale for a sheet's cell captions: the largest up to `max_scale` at which every
// caption fits its cell with the band's margins (one scale per sheet reads evenly).
int CaptionScale(const std::vector<std::vector<std::string>>& captions, int cell_width, int max_scale) {
  int scale = max_scale;
  for (const auto& row : captions)
    for (const std::string& c : row)
      while (scale > 1 && TextWidth(c, scale) + 4 * scale > cell_width) --scale;
  return scale;
}

// Writes `caption` in the bottom-left corner of the cell at (x0, y0) on a band of the
// sheet's background (a band keeps the text legible on any picture), cut to the
// characters that fit so that it is never drawn over the neighbouring cell.
void DrawCellCaption(Image& sheet, int x0, int y0, int cell_width, int cell_height, std::string_view caption,
                     int scale) {
  const int fit = (cell_width - 4 * scale + (kGlyphAdvance - kGlyphWidth) * scale) / (kGlyphAdvance * scale);
  const int band = kGlyphHeight * scale + 4 * scale;
  if (fit <= 0 || band > cell_height) return;
  caption = caption.substr(0, static_cast<size_t>(fit));
  const int band_width = std::min(cell_width, TextWidth(caption, scale) + 4 * scale);
  FillRect(sheet, x0, y0 + cell_height - band, band_width, band, kSheetBackground);
  DrawText(sheet, x0 + 2 * scale, y0 + cell_height - band + 2 * scale, caption, scale, kInk);
}

}  // namespace

absl::StatusOr<Image> ComposeContactSheet(const ContactSheetLayout& layout,
                                          const std::vector<std::vector<const Image*>>& cells, int cell_width,
                                          int cell_height) {
  const int cols = static_cast<int>(layout.column_labels.size());
  const int rows = static_cast<int>(layout.row_labels.size());
  if (cell_width < 1 || cell_height < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("contact sheet cells must be at least 1x1, got ", cell_width, "x", cell_height));
  }
  if (static_cast<int>(cells.size()) != rows) {
    return absl::InvalidArgumentError(
        absl::StrCat("contact sheet has ", rows, " row labels but ", cells.size(), " rows of cells"));
  }
  for (int r = 0; r < rows; ++r) {
    if (static_cast<int>(cells[r].size()) != cols) {
      return absl::InvalidArgumentError(
          absl::StrCat("contact sheet row ", r, " has ", cells[r].size(), " cells for ", cols, " columns"));
    }
    for (const Image* img : cells[r]) {
      if (img && (img->width != cell_width || img->height != cell_height || img->channels < 3)) {
        return absl::InvalidArgumentError(absl::StrCat("contact sheet cell is ", img->width, "x", img->height, "x",
                                                       img->channels, ", expected ", cell_width, "x", cell_height,
                                                       " RGB"));
      }
    }
  }
  const bool captioned = !layout.cell_captions.empty();
  if (captioned) {
    if (static_cast<int>(layout.cell_captions.size()) != rows) {
      return absl::InvalidArgumentError(absl::StrCat("contact sheet has ", layout.cell_captions.size(),
                                                     " rows of cell captions for ", rows, " rows"));
    }
    for (int r = 0; r < rows; ++r) {
      if (static_cast<int>(layout.cell_captions[r].size()) != cols) {
        return absl::InvalidArgumentError(absl::StrCat("contact sheet caption row ", r, " has ",
                                                       layout.cell_captions[r].size(), " captions for ", cols,
                                                       " columns"));
      }
    }
  }
  const int scale = cell_height >= 160 ? 2 : 1;
  const int pad = 4 * scale;
  const int caption_scale = captioned ? CaptionScale(layout.cell_captions, cell_width, scale) : 1;
  int label_width = 0;
  for (const std::string& l : layout.row_labels) label_width = std::max(label_width, TextWidth(l, scale));
  const int left = label_width + 2 * pad;
  const int top = kGlyphHeight * scale + 2 * pad;
  const int gap = scale * 2;
  const int width = left + cols * cell_width + std::max(0, cols - 1) * gap + pad;
  const int height = top + rows * cell_height + std::max(0, rows - 1) * gap + pad;
  Image sheet(width, height, 3);
  FillRect(sheet, 0, 0, width, height, kSheetBackground);
  for (int c = 0; c < cols; ++c) {
    const int x0 = left + c * (cell_width + gap);
    const std::string& label = layout.column_labels[c];
    DrawText(sheet, x0 + std::max(0, (cell_width - TextWidth(label, scale)) / 2), pad, label, scale, kInk);
  }
  for (int r = 0; r < rows; ++r) {
    const int y0 = top + r * (cell_height + gap);
    DrawText(sheet, pad, y0 + (cell_height - kGlyphHeight * scale) / 2, layout.row_labels[r], scale, kInk);
    for (int c = 0; c < cols; ++c) {
      const int x0 = left + c * (cell_width + gap);
      const Image* img = cells[r][c];
      if (!img) continue;  // left as sheet background
      for (int y = 0; y < cell_height; ++y)
        for (int x = 0; x < cell_width; ++x)
          for (int k = 0; k < 3; ++k) sheet.at(x0 + x, y0 + y, k) = img->at(x, y, k);
      if (captioned && !layout.cell_captions[r][c].empty()) {
        DrawCellCaption(sheet, x0, y0, cell_width, cell_height, layout.cell_captions[r][c], caption_scale);
      }
    }
  }
  return sheet;
}

absl::StatusOr<Image> StackWithCaptions(const std::vector<CaptionedImage>& parts, int scale) {
  if (parts.empty()) return absl::InvalidArgumentError("nothing to stack");
  if (scale < 1 || scale > 8) {
    return absl::InvalidArgumentError(absl::StrCat("caption scale ", scale, " is outside 1..8"));
  }
  const int pad = 4 * scale;
  const int caption_height = kGlyphHeight * scale + 2 * pad;
  int width = 0, height = 0;
  for (const CaptionedImage& p : parts) {
    if (!p.image || p.image->channels < 3) {
      return absl::InvalidArgumentError(absl::StrCat("stacked part '", p.caption, "' has no RGB image"));
    }
    width = std::max({width, p.image->width, 2 * pad + TextWidth(p.caption, scale)});
    height += caption_height + p.image->height;
  }
  Image out(width, height, 3);
  FillRect(out, 0, 0, width, height, kSheetBackground);
  int y0 = 0;
  for (const CaptionedImage& p : parts) {
    DrawText(out, pad, y0 + pad, p.caption, scale, kInk);
    y0 += caption_height;
    for (int y = 0; y < p.image->height; ++y)
      for (int x = 0; x < p.image->width; ++x)
        for (int k = 0; k < 3; ++k) out.at(x, y0 + y, k) = p.image->at(x, y, k);
    y0 += p.image->height;
  }
  return out;
}

}  // namespace flexgs
