// Contact sheets: layout, labels, per-cell captions and stacking.
#include "eval/contact_sheet.h"

#include <algorithm>

#include "gtest/gtest.h"
#include "scene/image.h"

namespace flexgs {
namespace {

TEST(ContactSheetTest, LaysOutCellsAndDrawsLabels) {
  Image a(20, 10, 3, 0.5f), b(20, 10, 3, 1.0f);
  ContactSheetLayout layout;
  layout.column_labels = {"ref", "5%"};
  layout.row_labels = {"gi-topk", "random"};
  auto sheet = ComposeContactSheet(layout, {{&a, &b}, {&a, nullptr}}, 20, 10);
  ASSERT_TRUE(sheet.ok()) << sheet.status();
  // Scale 1: label column = widest row label + 2 pads of 4; header = 7 + 8; gaps of 2.
  const int left = TextWidth("gi-topk", 1) + 8, top = 7 + 8;
  EXPECT_EQ(TextWidth("gi-topk", 1), 7 * 6 - 1);
  EXPECT_EQ(sheet->width, left + 2 * 20 + 2 + 4);
  EXPECT_EQ(sheet->height, top + 2 * 10 + 2 + 4);
  EXPECT_FLOAT_EQ(sheet->at(left, top, 0), 0.5f);
  EXPECT_FLOAT_EQ(sheet->at(left + 22, top, 0), 1.0f);
  // Some label ink (white) in the header and in the label column.
  int ink = 0;
  for (int y = 0; y < top; ++y)
    for (int x = 0; x < sheet->width; ++x) ink += sheet->at(x, y, 0) == 1.0f;
  EXPECT_GT(ink, 10);
  // Wrong cell sizes and shapes are rejected.
  Image wrong(21, 10, 3);
  EXPECT_FALSE(ComposeContactSheet(layout, {{&a, &wrong}, {&a, &a}}, 20, 10).ok());
  EXPECT_FALSE(ComposeContactSheet(layout, {{&a}, {&a, &a}}, 20, 10).ok());
}

TEST(ContactSheetTest, StacksPartsUnderCaptions) {
  Image wide(30, 10, 3, 0.5f), narrow(12, 6, 3, 1.0f);
  auto stack = StackWithCaptions({{"framed", &wide}, {"close-up", &narrow}}, 1);
  ASSERT_TRUE(stack.ok()) << stack.status();
  // Caption line: 7 + 2 pads of 4; the width of the widest part (or caption + pads).
  const int caption = 7 + 8;
  EXPECT_EQ(stack->width, std::max(30, TextWidth("close-up", 1) + 8));
  EXPECT_EQ(stack->height, caption + 10 + caption + 6);
  EXPECT_FLOAT_EQ(stack->at(0, caption, 0), 0.5f);
  EXPECT_FLOAT_EQ(stack->at(11, caption + 10 + caption + 5, 1), 1.0f);
  EXPECT_FLOAT_EQ(stack->at(4, 4 + 3, 0), 1.0f) << "caption ink: the F of FRAMED";
  EXPECT_FALSE(StackWithCaptions({}, 1).ok());
  EXPECT_FALSE(StackWithCaptions({{"x", nullptr}}, 1).ok());
  EXPECT_FALSE(StackWithCaptions({{"x", &wide}}, 0).ok());
}

TEST(ContactSheetTest, CaptionsSitInTheCellsBottomBand) {
  // Cells 60x20 at scale 1: a caption band is 7 + 4 pixels tall at the cell's bottom.
  Image a(60, 20, 3, 0.5f);
  ContactSheetLayout layout;
  layout.column_labels = {"ref", "1%"};
  layout.row_labels = {"m"};
  auto plain = ComposeContactSheet(layout, {{&a, &a}}, 60, 20);
  ASSERT_TRUE(plain.ok()) << plain.status();
  layout.cell_captions = {{"", "12.3 dB"}};
  auto captioned = ComposeContactSheet(layout, {{&a, &a}}, 60, 20);
  ASSERT_TRUE(captioned.ok()) << captioned.status();
  ASSERT_EQ(captioned->width, plain->width);
  ASSERT_EQ(captioned->height, plain->height);
  const int left = TextWidth("m", 1) + 8, top = 7 + 8, band = 7 + 4;
  const int x1 = left + 60 + 2;  // the captioned cell
  int changed_outside = 0, ink = 0, changed_uncaptioned = 0;
  for (int y = 0; y < plain->height; ++y) {
    for (int x = 0; x < plain->width; ++x) {
      const bool differs = captioned->at(x, y, 0) != plain->at(x, y, 0);
      const bool in_band = x >= x1 && x < x1 + 60 && y >= top + 20 - band && y < top + 20;
      if (differs && !in_band) ++changed_outside;
      if (in_band && captioned->at(x, y, 0) == 1.0f) ++ink;
      if (differs && x >= left && x < left + 60) ++changed_uncaptioned;
    }
  }
  EXPECT_EQ(changed_outside, 0) << "a caption only touches its own cell's bottom band";
  EXPECT_EQ(changed_uncaptioned, 0) << "an empty caption leaves its cell as it was";
  EXPECT_GT(ink, 20) << "the caption's text is drawn";
  // A caption too wide for the cell is clipped to it, never drawn over the neighbour.
  layout.cell_captions = {{"a very long caption that cannot fit", ""}};
  auto clipped = ComposeContactSheet(layout, {{&a, &a}}, 60, 20);
  ASSERT_TRUE(clipped.ok()) << clipped.status();
  for (int y = 0; y < plain->height; ++y)
    for (int x = x1 - 2; x < plain->width; ++x) ASSERT_EQ(clipped->at(x, y, 0), plain->at(x, y, 0)) << x << "," << y;
  // Captions of the wrong shape are rejected.
  layout.cell_captions = {{"x"}};
  EXPECT_FALSE(ComposeContactSheet(layout, {{&a, &a}}, 60, 20).ok());
  layout.cell_captions = {{"x", "y"}, {"z", "w"}};
  EXPECT_FALSE(ComposeContactSheet(layout, {{&a, &a}}, 60, 20).ok());
}

}  // namespace
}  // namespace flexgs
