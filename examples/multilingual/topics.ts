/**
 * The classification task of the multilingual example: a package's topic, from Debian's `Section` field.
 * Seven topics whose descriptions use distinct vocabulary; sections that mix topics or describe packaging rather
 * than purpose (libs, libdevel, devel, misc, utils, admin, doc, python, perl, x11, ...) get no label, so those
 * packages serve only as unlabelled text (pretraining, language modules).
 * Example: `topicOf('contrib/games') === 'games'`, `topicOf('libs') === null`.
 */

/** Topic → the Debian sections it takes. Chosen by content, not size: each topic has its own words. */
export const TOPICS: Readonly<Record<string, readonly string[]>> = {
  fonts: ['fonts'],
  games: ['games'],
  graphics: ['graphics'],
  mail: ['mail'],
  net: ['net'],
  science: ['science', 'math'],
  sound: ['sound'],
};

/** Topic names, sorted (the label order of the data files). */
export const TOPIC_NAMES: readonly string[] = Object.keys(TOPICS).sort();

const BY_SECTION = new Map<string, string>();
for (const [topic, sections] of Object.entries(TOPICS)) for (const s of sections) BY_SECTION.set(s, topic);

/** Section without the archive area prefix ('contrib/games' → 'games', 'non-free-firmware/kernel' → 'kernel'). */
export function bareSection(section: string): string {
  const i = section.lastIndexOf('/');
  return (i >= 0 ? section.slice(i + 1) : section).trim().toLowerCase();
}

/** The topic of a section, or null when the section is not one of the task's. */
export function topicOf(section: string): string | null {
  return BY_SECTION.get(bareSection(section)) ?? null;
}
