#!/usr/bin/env node
/**
 * Writes the small example datasets used by the README walk-through (deterministic, no downloads):
 *   topic/train.jsonl, topic/dev.jsonl  English topic classification (sport, politics, tech) from templates
 *   topic/de-test.jsonl                 the same task in German (for zero-shot transfer through MAD-X)
 *   en.txt, de.txt                      unlabelled English / German sentences for language adapters (MLM)
 * Run: node examples/make-data.js
 */
const fs = require('fs');
const path = require('path');

let s = 12345;
const rnd = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
const pick = (a) => a[Math.floor(rnd() * a.length)];

const EN = {
  sport: { subj: ['the striker', 'our goalkeeper', 'the coach', 'the home team', 'the champion', 'the runner'], verb: ['scored in', 'won', 'lost', 'trained for', 'celebrated'], obj: ['the final match', 'the league game', 'the marathon', 'the derby', 'the cup semifinal', 'the tennis open'] },
  politics: { subj: ['the minister', 'parliament', 'the president', 'the opposition leader', 'the senator', 'the government'], verb: ['debated', 'passed', 'rejected', 'announced', 'criticised'], obj: ['the new budget', 'the election law', 'a tax reform', 'the coalition deal', 'the foreign policy', 'the vote'] },
  tech: { subj: ['the startup', 'our engineers', 'the chip maker', 'the software team', 'the phone company', 'researchers'], verb: ['released', 'tested', 'announced', 'shipped', 'improved'], obj: ['a faster processor', 'the new smartphone', 'an open source library', 'the cloud platform', 'a language model', 'the battery design'] },
};
const DE = {
  sport: { subj: ['der Stürmer', 'unser Torwart', 'der Trainer', 'die Heimmannschaft', 'der Meister', 'die Läuferin'], verb: ['gewann', 'verlor', 'feierte', 'trainierte für', 'spielte'], obj: ['das Finale', 'das Ligaspiel', 'den Marathon', 'das Derby', 'das Pokalhalbfinale', 'das Tennisturnier'] },
  politics: { subj: ['der Minister', 'das Parlament', 'die Präsidentin', 'die Opposition', 'der Senator', 'die Regierung'], verb: ['debattierte', 'beschloss', 'lehnte ab', 'kündigte an', 'kritisierte'], obj: ['den neuen Haushalt', 'das Wahlgesetz', 'eine Steuerreform', 'den Koalitionsvertrag', 'die Außenpolitik', 'die Abstimmung'] },
  tech: { subj: ['das Startup', 'unsere Ingenieure', 'der Chiphersteller', 'das Softwareteam', 'die Telefonfirma', 'die Forscher'], verb: ['veröffentlichte', 'testete', 'stellte vor', 'lieferte', 'verbesserte'], obj: ['einen schnelleren Prozessor', 'das neue Smartphone', 'eine freie Bibliothek', 'die Cloud-Plattform', 'ein Sprachmodell', 'das Batteriedesign'] },
};
const tails = { en: ['today', 'on monday', 'after a long week', 'again', 'this year', ''], de: ['heute', 'am Montag', 'nach einer langen Woche', 'wieder', 'dieses Jahr', ''] };

function sentence(lang, label) {
  const t = (lang === 'en' ? EN : DE)[label];
  return `${pick(t.subj)} ${pick(t.verb)} ${pick(t.obj)} ${pick(tails[lang])}`.trim().replace(/^./, (c) => c.toUpperCase()) + '.';
}
function labelled(lang, n) {
  const labels = Object.keys(EN);
  return Array.from({ length: n }, (_, i) => JSON.stringify({ text: sentence(lang, labels[i % 3]), label: labels[i % 3] })).join('\n') + '\n';
}
function plain(lang, n) {
  const labels = Object.keys(EN);
  return Array.from({ length: n }, () => sentence(lang, pick(labels))).join('\n') + '\n';
}

const dir = __dirname;
fs.mkdirSync(path.join(dir, 'topic'), { recursive: true });
fs.writeFileSync(path.join(dir, 'topic', 'train.jsonl'), labelled('en', 600));
fs.writeFileSync(path.join(dir, 'topic', 'dev.jsonl'), labelled('en', 150));
fs.writeFileSync(path.join(dir, 'topic', 'de-test.jsonl'), labelled('de', 150));
fs.writeFileSync(path.join(dir, 'en.txt'), plain('en', 800));
fs.writeFileSync(path.join(dir, 'de.txt'), plain('de', 800));
process.stdout.write(`wrote examples to ${dir}\n`);
