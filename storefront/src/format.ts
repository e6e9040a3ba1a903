const formats = new Map<string, Intl.NumberFormat>();

/** 1999, "EUR" -> "€19.99" in the shopper's locale. */
export function money(cents: number, currency: string | null | undefined): string {
  const code = currency || "USD";
  let f = formats.get(code);
  if (!f) {
    f = new Intl.NumberFormat(undefined, { style: "currency", currency: code });
    formats.set(code, f);
  }
  return f.format(cents / 100);
}

export function dateTime(iso: string): string {
  return new Date(iso).toLocaleString();
}
