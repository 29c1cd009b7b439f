"""Plain English topic vocabularies for the synthetic text (the bundled MiniLM encoder knows
these words). Topic k of the generator's latent space owns TOPIC_WORDS[k]; no word is shared
between topics, so text links items of different IDs and scenarios through their topic."""

TOPIC_WORDS: tuple[tuple[str, ...], ...] = (
    ("flight", "hotel", "beach", "passport", "luggage", "resort", "cruise", "island", "tour",
     "airport", "sightseeing", "backpacking"),
    ("coffee", "noodles", "pizza", "bakery", "dumplings", "sushi", "barbecue", "dessert",
     "restaurant", "hotpot", "breakfast", "tea"),
    ("stocks", "savings", "loan", "mortgage", "dividend", "pension", "wealth", "fund", "bond",
     "deposit", "interest", "budget"),
    ("game", "console", "esports", "puzzle", "arcade", "multiplayer", "quest", "joystick",
     "level", "tournament", "strategy", "avatar"),
    ("concert", "guitar", "playlist", "singer", "album", "piano", "karaoke", "band", "lyrics",
     "headphones", "orchestra", "festival"),
    ("football", "basketball", "tennis", "marathon", "swimming", "badminton", "stadium",
     "league", "coach", "cycling", "golf", "skiing"),
    ("hospital", "medicine", "dentist", "vitamins", "clinic", "doctor", "pharmacy", "checkup",
     "therapy", "nurse", "vaccine", "allergy"),
    ("school", "exam", "tutor", "university", "lecture", "homework", "textbook", "scholarship",
     "language", "course", "classroom", "degree"),
    ("dress", "sneakers", "handbag", "jacket", "jeans", "watch", "sunglasses", "scarf",
     "boutique", "fashion", "jewelry", "shirt"),
    ("movie", "cinema", "actor", "trailer", "comedy", "thriller", "documentary", "premiere",
     "director", "drama", "animation", "popcorn"),
    ("insurance", "policy", "premium", "coverage", "claim", "accident", "liability", "annuity",
     "beneficiary", "deductible", "underwriter", "protection"),
    ("puppy", "kitten", "veterinarian", "leash", "aquarium", "hamster", "parrot", "grooming",
     "kennel", "petfood", "rabbit", "goldfish"),
    ("car", "engine", "tires", "garage", "gasoline", "dealership", "sedan", "motorcycle",
     "parking", "carwash", "battery", "highway"),
    ("lipstick", "skincare", "perfume", "shampoo", "makeup", "manicure", "moisturizer",
     "salon", "mascara", "sunscreen", "cosmetics", "haircut"),
    ("furniture", "sofa", "kitchen", "mattress", "curtains", "lamp", "carpet", "plumber",
     "renovation", "garden", "wardrobe", "cleaning"),
    ("smartphone", "laptop", "tablet", "charger", "camera", "software", "robot", "drone",
     "keyboard", "monitor", "processor", "router"),
    ("diapers", "stroller", "toddler", "toys", "kindergarten", "lullaby", "crib", "babysitter",
     "playground", "pacifier", "nursery", "cartoon"),
    ("newspaper", "headline", "election", "journalist", "weather", "economy", "report",
     "interview", "broadcast", "magazine", "editorial", "podcast"),
    ("gym", "yoga", "treadmill", "protein", "dumbbell", "workout", "pilates", "stretching",
     "trainer", "running", "fitness", "squat"),
    ("novel", "library", "poetry", "author", "bookstore", "fiction", "biography", "ebook",
     "bestseller", "chapter", "memoir", "comics"),
)

# Words that name what an item is in each scenario (codes as in recsys.antm2c.SCENARIOS).
SCENARIO_NOUNS: tuple[tuple[str, ...], ...] = (
    ("article", "story", "guide", "review"),
    ("app", "mini program", "service", "assistant"),
    ("deal", "offer", "sale", "promotion"),
    ("video", "clip", "live stream", "episode"),
    ("voucher", "coupon", "discount", "cashback"),
)

ADJECTIVES = ("best", "new", "cheap", "popular", "great", "daily", "local", "smart", "easy",
              "top", "free", "family")

BILL_WORDS = ("electricity bill", "water bill", "phone top-up", "credit card", "rent",
              "internet bill", "gas bill", "tuition fee")

SERVICE_WORDS = ("taxi", "food delivery", "express parcel", "hotel booking", "train ticket",
                 "bike sharing", "movie ticket", "hospital appointment")
