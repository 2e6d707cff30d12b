/** The load-time transpose (modules-store/kinds/types.ts), eight rows at a time: every element lands where the definition puts it, the rows past the last eight included. */
import { transpose } from '../../modules-store/kinds/types';

it.each([
  [1, 1],
  [1, 5],
  [5, 1],
  [32, 32],
  [33, 70],
  [64, 31],
  [100, 3],
  [8, 1],
  [17, 9],
  [768, 48],
])('transposes a %i × %i matrix', (rows, cols) => {
  const src = Float32Array.from({ length: rows * cols }, (_, i) => i + 0.5);
  const out = transpose(src, rows, cols);
  expect(out.length).toBe(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) expect(out[c * rows + r]).toBe(src[r * cols + c]);
  expect(transpose(out, cols, rows)).toEqual(src);
});
