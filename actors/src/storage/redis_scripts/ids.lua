-- Stream ids ('ms-seq', numbers without leading zeros), compared by their parts' lengths and
-- text: a pattern match cost a comparison three times as much, several times per document.
local function split(id)
  local dash = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
end
local function lt(a, b)
  local x = string.find(a, '-', 1, true)
  local y = string.find(b, '-', 1, true)
  if x ~= y then return x < y end
  local am, bm = string.sub(a, 1, x - 1), string.sub(b, 1, y - 1)
  if am ~= bm then return am < bm end
  return tonumber(string.sub(a, x + 1)) < tonumber(string.sub(b, y + 1))
end
local function after(id)
  local ms, seq = split(id)
  return string.format('%d-%d', ms, seq + 1)
end
