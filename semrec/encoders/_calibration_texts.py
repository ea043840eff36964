"""Short item texts shipped with semrec: int8 calibration data, the quality guard's sample.

They imitate what semrec encodes (item names with categories and tags, and short history
summaries) across several domains, so that activation ranges and neighbour structure resemble
a real catalogue. Passing the catalogue's own texts (``sample_texts=``) is better still.
"""

from __future__ import annotations

_ITEMS = """\
Toy Story (1995). Genres: Adventure, Animation, Children, Comedy, Fantasy
Heat (1995). Genres: Action, Crime, Thriller
The Shawshank Redemption (1994). Genres: Crime, Drama
Spirited Away (2001). Genres: Adventure, Animation, Fantasy
Alien (1979). Genres: Horror, Sci-Fi. Tags: space, creature, isolation
When Harry Met Sally (1989). Genres: Comedy, Romance
Blade Runner 2049 (2017). Genres: Sci-Fi, Thriller. Tags: dystopia, replicants
The Grand Budapest Hotel (2014). Genres: Comedy, Drama. Tags: quirky, hotel, Europe
Mad Max: Fury Road (2015). Genres: Action, Adventure. Tags: desert, chase
Amélie (2001). Genres: Comedy, Romance. Tags: Paris, whimsical
Planet Earth II: documentary series about wildlife and habitats
Breaking Bad, season one: crime drama about a chemistry teacher
A quiet family drama set on a Norwegian farm in winter
Animated short film about a robot learning to paint
Pride and Prejudice by Jane Austen. Category: classic fiction, romance
Dune by Frank Herbert. Category: science fiction. Tags: desert planet, politics
The Very Hungry Caterpillar. Category: children's picture book
Sapiens: A Brief History of Humankind. Category: non-fiction, history
Cooking with cast iron: 100 recipes for one pan. Category: cookbook
Introduction to Algorithms, 3rd edition. Category: computer science textbook
The Midnight Library. Category: contemporary fiction. Tags: regret, parallel lives
A field guide to the birds of North America
Murder on the Orient Express. Category: mystery, detective
Learn Spanish in 30 days: audio course for beginners
Kind of Blue by Miles Davis. Genre: jazz. Mood: calm, late night
Abbey Road by The Beatles. Genre: rock, pop
Lo-fi beats to study to: instrumental hip hop playlist
Beethoven Symphony No. 9 in D minor. Genre: classical
Thunderstruck by AC/DC. Genre: hard rock. Tags: guitar, stadium
Summer reggaeton hits playlist, upbeat dance
Acoustic folk songs for a rainy afternoon
Podcast: weekly interviews with startup founders about growth
Podcast episode on sleep science and circadian rhythms
Men's trail running shoes, waterproof, size 42. Category: footwear
Women's merino wool sweater, crew neck, navy blue
Stainless steel insulated water bottle, 750 ml
Wireless noise-cancelling headphones with 30-hour battery
USB-C charging cable, braided, 2 metres
Mechanical keyboard with brown switches, tenkeyless layout
27-inch 4K monitor with adjustable stand. Category: electronics
Cordless drill with two batteries and carrying case. Category: tools
Non-stick frying pan, 28 cm, induction compatible
Organic green tea, loose leaf, 100 g. Category: grocery
Dark chocolate 85% cocoa, fair trade
Extra virgin olive oil from Crete, 1 litre
Dog food for senior dogs, chicken and rice, 12 kg. Category: pet supplies
Cat scratching post with sisal rope and a small bed
LEGO city fire station building set, ages 6+. Category: toys
Wooden puzzle for toddlers with farm animals
Board game: cooperative strategy for 2 to 4 players
Yoga mat, 6 mm, non-slip, purple. Category: sports
Adjustable dumbbells, pair, 2 to 24 kg
Camping tent for four people, waterproof, easy setup
Children's bicycle with training wheels, 16 inch
Sunscreen SPF 50 for sensitive skin. Category: beauty
Shampoo for curly hair, sulfate free
Electric toothbrush with pressure sensor
Vitamin D3 supplements, 1000 IU, 120 capsules
Office chair with lumbar support, mesh back. Category: furniture
Scandinavian oak dining table for six people
Linen duvet cover, queen size, washed grey
Indoor plant: Monstera deliciosa in a ceramic pot
Robot vacuum cleaner with mapping and app control
Espresso machine with milk frother. Category: kitchen appliances
Smartphone with 128 GB storage and triple camera
Kindle e-reader, 6 inch glare-free display
Gaming laptop with RTX graphics and 16 GB RAM
Smartwatch with heart rate and GPS tracking
Recipe: creamy mushroom risotto. Tags: vegetarian, Italian, dinner
Recipe: spicy chicken tacos with lime slaw. Tags: Mexican, quick
Recipe: overnight oats with berries. Tags: breakfast, healthy
Recipe: Thai green curry with tofu. Tags: vegan, spicy
Recipe: classic French onion soup. Tags: winter, comfort food
Recipe: chocolate chip cookies. Tags: baking, dessert
Hotel in Lisbon old town, rooftop terrace, near the tram line
Beach resort in Bali with infinity pool and spa
Mountain cabin in the Alps, ski-in ski-out, fireplace
City break: three days in Kyoto temples and gardens
Hiking trail: coastal path in Cornwall, 12 km, moderate
Museum: modern art collection with free entry on Sundays
Online course: machine learning with Python for beginners
Online course: watercolour painting fundamentals
Workshop: public speaking and presentation skills
Course: personal finance and budgeting basics
Mobile app: habit tracker with reminders and streaks
Mobile app: offline maps for hiking and cycling
Video game: open-world fantasy role-playing game
Video game: competitive online first-person shooter
Video game: cozy farming simulation with crafting
Article: how central banks fight inflation
Article: the rise of electric vehicles in Europe
Article: tips for growing tomatoes on a balcony
News: local elections and turnout in the capital
Job: senior data engineer, remote, Python and SQL
Job: nurse for a night shift at a children's hospital
Event: open-air jazz concert in the park on Saturday
Event: farmers market with local cheese and bread
Restaurant: family-run trattoria with wood-fired pizza
Restaurant: sushi bar with omakase menu
Café: specialty coffee roaster with vegan pastries
Second-hand vinyl records, 1970s soul and funk
Vintage leather jacket, brown, medium
Handmade ceramic mug, speckled glaze
Knitting kit for a beginner scarf, chunky yarn
Sci-fi novels with space exploration and first contact
Feel-good comedies for a family movie night
Dark psychological thrillers with unreliable narrators
Documentaries about climate change and oceans
Watched recently: Inception, Interstellar, The Matrix. Likes: mind-bending sci-fi
Recently bought: running shoes, energy gels, a sports watch
Listens to: indie rock, dream pop, shoegaze
Reads: cosy mysteries and historical fiction set in England
Enjoys: spicy food, street food markets and cooking classes
Frequently books: budget hostels in big European cities
Plays: strategy games and puzzle games on weekends
Interested in: home workouts, yoga and healthy recipes
Buys: baby clothes, diapers and wooden toys
Follows: football highlights and transfer news
Collects: fountain pens, notebooks and ink
"""

#: About 130 short, varied item texts (one per line above).
CALIBRATION_TEXTS: tuple[str, ...] = tuple(line for line in _ITEMS.splitlines() if line.strip())
